fn main() {
    std::process::exit(enas::cli::main());
}
