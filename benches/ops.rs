//! `cargo bench --bench ops`: the custom ops against candle's composition,
//! forward + backward, the same measurement as `enas bench ops`.
fn main() {
    if let Err(e) = enas::cli::bench::bench_ops(false, 20, &[64, 32, 16, 16]) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
