//! The `enas` command line.
pub mod bench;
pub mod bench_nb201;
pub mod bench_ranking;
pub mod bench_retrain;
pub mod bench_supernet;
pub mod export;
pub mod multi_trial;
pub mod predict;
mod ranges;
mod search;
mod session;

use crate::data::cifar::Variant;
use crate::data::{fetch, Augment, DataShape, DatasetKind};
use crate::model::NetConfig;
use crate::space::{Arch, SpaceKind};
use crate::train::retrain::{self, RetrainConfig};
use crate::train::SgdConfig;
use anyhow::Result;
use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
// A flag given twice takes its last value: `--resume --out DIR` replays the run's stored command, then the flags given now.
#[command(name = "enas", version, about = "Neural architecture search by reinforcement learning, on candle", args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--device`, on the commands that compute (not on `draw`, `report` or `data`).
#[derive(Args, Clone, Debug)]
pub struct DeviceArg {
    /// Where to compute: cpu, cuda, cuda:N, or auto (the first GPU when built with the cuda feature and one is there).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl DeviceArg {
    pub fn open(&self) -> Result<Device> {
        parse_device(&self.device)
    }
}

/// The device `--device` names.
pub fn parse_device(name: &str) -> Result<Device> {
    let cuda = |ordinal: usize| -> Result<Device> {
        if !cfg!(feature = "cuda") {
            anyhow::bail!("--device {name}: this enas was built without CUDA; build it with `cargo build --release --features cuda`");
        }
        let device = Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("--device {name}: {e}"))?;
        crate::ops::device::prepare(&device).map_err(|e| anyhow::anyhow!("--device {name}: {e}"))?;
        Ok(device)
    };
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(if cfg!(feature = "cuda") { cuda(0).unwrap_or(Device::Cpu) } else { Device::Cpu }),
        "cuda" => cuda(0),
        _ => match name.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(ordinal) => cuda(ordinal),
            None => anyhow::bail!("--device {name}: expected cpu, cuda, cuda:N or auto"),
        },
    }
}

#[derive(Subcommand)]
enum Command {
    /// Datasets: download and check them.
    #[command(subcommand)]
    Data(DataCommand),
    /// Search, derive, retrain and report in one resumable run.
    Train(search::TrainArgs),
    /// The search stage alone (shared weights and controller), into OUT/search.
    Search(search::SearchArgs),
    /// Pick the final architecture from a finished search, into RUN/derive.
    Derive(search::DeriveArgs),
    /// Train a given architecture from scratch and test it.
    Retrain(RetrainArgs),
    /// Test accuracy of a trained model directory.
    Eval(EvalArgs),
    /// Write a trained model as an ONNX file (inference mode, normalisation inside, any batch size).
    Export(export::ExportArgs),
    /// The most likely classes of images (PNG or JPEG), by name, from a trained model.
    Predict(predict::PredictArgs),
    /// Speed measurements.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Draw an architecture: micro cells, the macro chain with its skips, an NB201 cell or a MetaQNN chain.
    Draw(DrawArgs),
    /// Write RUN/report.html for a run or stage directory (also while it runs).
    Report(ReportArgs),
    /// One child of a multi-trial search, started by its executor (a subprocess or a Slurm job).
    #[command(hide = true)]
    Child(multi_trial::ChildArgs),
    /// The runs in a directory, a row each: space, method, stage reached, test accuracy, time, command.
    Runs {
        /// A directory of runs (each the --out of a train, search or retrain), or one run.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// One JSON object per run, a line each, instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ReportArgs {
    /// A directory written by `enas train`, `search`, `derive` or `retrain` (the --out it was given).
    #[arg(value_name = "RUN", required_unless_present = "run")]
    dir: Option<PathBuf>,
    /// The same directory, named as `enas derive --run` and `enas eval --run` name it.
    #[arg(long, value_name = "RUN", conflicts_with = "dir")]
    run: Option<PathBuf>,
}

#[derive(Args)]
struct DrawArgs {
    /// Architecture: its string, a file holding one, or an arch.json.
    arch: String,
    /// Search space: the ENAS micro cells, the ENAS macro network, MetaQNN layer chains or NAS-Bench-201 [default: the one an arch.json records, else micro].
    #[arg(long, value_enum)]
    space: Option<SpaceKind>,
    /// Output file; its extension picks the format: .svg, .png or .dot.
    #[arg(short, long, visible_alias = "output")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download the official tarball, check its MD5 and extract it into the cache.
    Fetch {
        /// Dataset to train and test on.
        #[arg(value_parser = ["cifar10", "cifar100"])]
        dataset: String,
        /// Where to put it, the --data-dir to give the other commands (default: $ENAS_DATA, else the XDG cache directory).
        #[arg(long, visible_alias = "dir")]
        data_dir: Option<PathBuf>,
        /// A mirror of the official tarball (its MD5 must still match, unless --md5 is given).
        #[arg(long, hide = true)]
        url: Option<String>,
        #[arg(long, hide = true)]
        md5: Option<String>,
    },
    /// Load a dataset as training would (a folder one decoded into its cache) and say what it holds.
    Info {
        #[command(flatten)]
        data: DataArgs,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct DataArgs {
    /// Dataset to train and test on.
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    pub dataset: DatasetKind,
    /// Directory with the dataset files (default: where `scripts/setup.sh` or `enas data fetch` puts them); for `--dataset folder`, the folder holding train/<class>/.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Folder datasets: convert every image to 1 (grey) or 3 (RGB) channels [default: what the images have].
    #[arg(long, value_parser = ranges::one_or_three)]
    pub image_channels: Option<usize>,
    /// Folder datasets: resize every image to this square side [default: the most common side among the training images].
    #[arg(long, value_parser = ranges::count)]
    pub image_size: Option<usize>,
    /// Folder datasets: a file that is not a readable PNG or JPEG is an error, not left out with a note.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args)]
struct RetrainArgs {
    /// Search space: the ENAS micro cells, the ENAS macro network, MetaQNN layer chains or NAS-Bench-201 [default: the one an arch.json records, else micro].
    #[arg(long, value_enum)]
    space: Option<SpaceKind>,
    /// Architecture: the authors' string, or a file holding one, or an arch.json.
    #[arg(long)]
    arch: String,
    #[command(flatten)]
    data: DataArgs,
    /// Output directory of the run (created; with --resume, the run to continue).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
    /// Training epochs.
    #[arg(long, value_parser = ranges::count, default_value_t = 10)]
    epochs: usize,
    /// Micro: normal cells in all, the authors' num_layers, with a reduction cell after each third (3 gives N R N R N); macro: ignored (the arc fixes it).
    #[arg(long, value_parser = ranges::count, default_value_t = 3)]
    layers: usize,
    /// Width of the first cells (micro) or every layer (macro), in channels.
    #[arg(long, value_parser = ranges::count, default_value_t = 16)]
    channels: usize,
    /// MetaQNN: filters and units are the paper's times this.
    #[arg(long, value_parser = ranges::positive, allow_negative_numbers = true, default_value_t = 1.0)]
    width: f64,
    /// Images per training step.
    #[arg(long, value_parser = ranges::count, default_value_t = 128)]
    batch: usize,
    /// Peak learning rate of the cosine schedule (the authors' lr_max).
    #[arg(long, value_parser = ranges::positive, allow_negative_numbers = true, default_value_t = 0.05)]
    lr: f64,
    /// Learning rate at the end of each cosine period.
    #[arg(long, value_parser = ranges::non_negative, allow_negative_numbers = true, default_value_t = 1e-4)]
    lr_min: f64,
    /// First cosine period in epochs (SGDR's T0; default: the whole run, no restart).
    #[arg(long, value_parser = ranges::positive, allow_negative_numbers = true)]
    lr_t0: Option<f64>,
    /// Each period is this many times the previous one (SGDR's Tmul).
    #[arg(long, value_parser = ranges::at_least_one, allow_negative_numbers = true, default_value_t = 1.0)]
    lr_t_mul: f64,
    /// SGD momentum (Nesterov); 0 for plain SGD.
    #[arg(long, value_parser = ranges::fraction, allow_negative_numbers = true, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay: weight_decay * w is added to the gradient (the authors' l2_reg L adds L * sum(w^2) to the loss: our 2L).
    #[arg(long, value_parser = ranges::non_negative, allow_negative_numbers = true, default_value_t = 2e-4)]
    weight_decay: f64,
    /// Apply weight decay decoupled from the gradient (SGDW) instead of as L2.
    #[arg(long)]
    decoupled_wd: bool,
    /// Clip the gradients to this global L2 norm (0: no clipping, the authors' code in effect: its clip never acts).
    #[arg(long, value_parser = ranges::non_negative, allow_negative_numbers = true, default_value_t = 5.0)]
    grad_clip: f64,
    /// Label smoothing of the cross-entropy loss (0: none).
    #[arg(long, value_parser = ranges::fraction, allow_negative_numbers = true, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Cutout side in pixels (0: off).
    #[arg(long, default_value_t = 0)]
    cutout: usize,
    /// Random-crop padding in pixels (default: 4 for CIFAR, 2 for 28x28 images).
    #[arg(long)]
    crop_pad: Option<usize>,
    /// Random horizontal flips (default: on, except for MNIST digits).
    #[arg(long)]
    flip: Option<bool>,
    /// Weight of the auxiliary head's loss (0: no auxiliary head).
    #[arg(long, value_parser = ranges::non_negative, allow_negative_numbers = true, default_value_t = 0.4)]
    aux_weight: f64,
    /// Final drop-path probability.
    #[arg(long, value_parser = ranges::fraction_f32, allow_negative_numbers = true, default_value_t = 0.0)]
    drop_path: f32,
    /// Dropout before the classifier.
    #[arg(long, value_parser = ranges::fraction_f32, allow_negative_numbers = true, default_value_t = 0.0)]
    dropout: f32,
    /// Training images held out for validation.
    #[arg(long, default_value_t = 5000)]
    valid_size: usize,
    /// Use only the first N training images.
    #[arg(long, value_parser = ranges::count)]
    train_limit: Option<usize>,
    /// Images per evaluation batch.
    #[arg(long, value_parser = ranges::count, default_value_t = 100)]
    eval_batch: usize,
    /// Seed of every random number of the run (the same seed gives the same numbers).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue the run in --out from its last finished epoch.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs of this invocation (to test --resume).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// No progress bars or per-epoch lines, only the result.
    #[arg(long)]
    quiet: bool,
    /// Also write each epoch's metrics as TensorBoard scalars (OUT/tensorboard/).
    #[arg(long)]
    tensorboard: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// A directory written by `enas retrain`, or an `enas train` run (its retrain stage is read).
    #[arg(long, value_name = "RUN", visible_alias = "model")]
    run: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
    /// Evaluate on this dataset (default: the one it was trained on).
    #[arg(long, value_enum)]
    dataset: Option<DatasetKind>,
    /// Directory with the dataset files (default: where `scripts/setup.sh` or `enas data fetch` puts them).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn draw(a: &DrawArgs) -> Result<()> {
    use crate::report::draw::{graphs, to_dot, to_png, to_svg};
    let arch = Arch::load_in(a.space, &a.arch)?;
    let g = graphs(&arch);
    let bytes = match a.out.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("svg") => to_svg(&g).into_bytes(),
        Some("png") => to_png(&to_svg(&g))?,
        Some("dot") | Some("gv") => to_dot(&g).into_bytes(),
        _ => anyhow::bail!("{}: the extension must be .svg, .png or .dot", a.out.display()),
    };
    std::fs::write(&a.out, bytes).map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", a.out.display()))?;
    println!("drew {} into {}", arch.to_arc_string(), a.out.display());
    Ok(())
}

/// Runs the CLI and returns the process exit code; errors print as one line.
pub fn main() -> i32 {
    configure_runtime();
    let args = session::with_stored_settings(std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                e.exit();
            }
            eprintln!("{}", one_line(&e.render().to_string()));
            return 1;
        }
    };
    if let Err(e) = crate::ops::simd::init_from_env() {
        eprintln!("error: {e}");
        return 1;
    }
    match in_worker_pool(|| run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// clap's message for a bad command line as one line, as every other bad
/// input: its error, its tip if it has one, and where the options are listed.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines.next().unwrap_or("error: bad command line").to_string();
    let rest: Vec<&str> = lines.collect();
    // "the following required arguments were not provided:" lists them on the lines after.
    if line.ends_with(':') {
        let listed: Vec<&str> =
            rest.iter().copied().take_while(|l| !l.starts_with("Usage: ") && !l.starts_with("tip: ") && !l.starts_with("For more")).collect();
        line = format!("{line} {}", listed.join(", "));
    }
    if let Some(tip) = rest.iter().find_map(|l| l.strip_prefix("tip: ")) {
        line = format!("{line}; {tip}");
    }
    if let Some(usage) = rest.iter().find_map(|l| l.strip_prefix("Usage: ")) {
        let command: Vec<&str> = usage.split_whitespace().take_while(|w| !w.starts_with('[') && !w.starts_with('<') && !w.starts_with('-')).collect();
        line = format!("{line} (`{} --help` lists the options)", command.join(" "));
    }
    line
}

/// Runs `f` on a worker of a rayon pool of one thread per core, so that the
/// thread driving training is one of the pool's: the parallel ops then run on
/// it and the other workers, instead of handing off to a pool of as many
/// threads again while it waits (three threads on two cores, the idle ones
/// spinning through the serial parts of a step).
fn in_worker_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let cores = cores();
    // candle's backward walks the graph recursively: a search step's graph needs more than rayon's default stack.
    match rayon::ThreadPoolBuilder::new().num_threads(cores).stack_size(64 << 20).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// CPU cores this process may use: `RAYON_NUM_THREADS` where set (a
/// multi-trial executor gives each child its share that way), else all.
fn cores() -> usize {
    let given = std::env::var("RAYON_NUM_THREADS").ok().and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
    given.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// Thread and allocator settings for training on this machine; the binary and
/// the criterion benches call it first.
pub fn configure_runtime() {
    configure_threads();
    configure_allocator();
}

/// Thread settings for candle's CPU backend, unless the user set them. Without
/// `RAYON_NUM_THREADS` candle re-reads the CPU list from /proc on every op (3%
/// of a training step here). On two cores candle's own pool for elementwise ops
/// spins a worker after each op that competes with rayon's threads (our ops and
/// the matmuls): one step at 12 channels went from 87 to 96-99 images/s without it.
fn configure_threads() {
    let cores = cores();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", cores.to_string());
    }
    if cores <= 2 && std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keeps freed tensor buffers in the heap for the next step. glibc serves
/// blocks over 128 KiB (most activations) by mmap and returns them on free, so
/// every op paid fresh page faults and the kernel's zeroing of its output:
/// 12% of a micro search step, and the macro step got 22% faster without it.
fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, under glibc's own arena locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(DataCommand::Info { data, json }) => search::data_info(&data, json),
        Command::Data(DataCommand::Fetch { dataset, data_dir, url, md5 }) => {
            let variant = if dataset == "cifar10" { Variant::Cifar10 } else { Variant::Cifar100 };
            let mut source = fetch::official(variant);
            if let Some(u) = url {
                source.url = u;
            }
            if let Some(m) = md5 {
                source.md5 = m;
            }
            let dir = data_dir.unwrap_or_else(fetch::cache_dir);
            let at = fetch::fetch(variant, &source, &dir, true)?;
            println!("{dataset} is in {}", at.display());
            Ok(())
        }
        Command::Train(a) => search::train(a),
        Command::Search(a) => search::search(a),
        Command::Derive(a) => search::derive(a),
        Command::Retrain(a) => {
            let shape = search::ensure_data(&a.data, false, !a.quiet)?;
            let cfg = retrain_config(&a, shape)?;
            let device = a.device.open()?;
            session::begin(&a.out, &a.out.join("config.json"), &[], a.resume, &device, !a.quiet)?;
            let had_finished = a.resume && retrain::finished(&a.out).is_some();
            let opts = retrain::RunOptions {
                resume: a.resume,
                show_progress: !a.quiet,
                stop_after: a.stop_after,
                skip_test: false,
                tensorboard: a.tensorboard,
                ahead: None,
            };
            let Some(s) = retrain::run(&cfg, &a.out, &opts, &device)? else {
                println!("stopped as asked; continue with --resume");
                return Ok(());
            };
            if had_finished {
                eprintln!("{}: this run had finished; its result:", a.out.display());
            }
            println!(
                "test accuracy {:.4} ({} parameters, {}, {:.0}s); model in {}",
                s.test_accuracy,
                s.params,
                crate::report::count_of(s.epochs.len(), "epoch"),
                s.seconds,
                a.out.display()
            );
            Ok(())
        }
        Command::Eval(a) => {
            let e = crate::train::model_dir::eval_dir(&a.run, a.dataset, a.data_dir, true, &a.device.open()?)?;
            println!("test accuracy {:.4} ({})", e.accuracy, crate::report::size_of(e.params, e.multiply_adds));
            Ok(())
        }
        Command::Export(a) => export::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Bench(b) => bench::run(b),
        Command::Draw(a) => draw(&a),
        Command::Child(a) => multi_trial::child(&a),
        Command::Runs { dir, json } => {
            let rows = crate::report::runs::scan(&dir)?;
            if json {
                for r in &rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else if rows.is_empty() {
                println!("no runs in {}", dir.display());
            } else {
                print!("{}", crate::report::runs::table(&rows, &dir));
            }
            Ok(())
        }
        Command::Report(a) => {
            let dir = a.dir.or(a.run).expect("clap requires one");
            let path = crate::report::html::write(&dir)?;
            println!("wrote {}", path.display());
            Ok(())
        }
    }
}

fn retrain_config(a: &RetrainArgs, shape: DataShape) -> Result<RetrainConfig> {
    let nb201 = "--space nb201: NAS-Bench-201 cells are looked up in a table (`enas bench nb201 --table FILE`), not trained here";
    if a.space == Some(SpaceKind::Nb201) {
        anyhow::bail!(nb201);
    }
    let arch = Arch::load_in(a.space, &a.arch)?;
    if arch.space() == SpaceKind::Nb201 {
        anyhow::bail!(nb201);
    }
    let kind = a.data.dataset;
    if a.batch == 0 || a.epochs == 0 || a.channels == 0 {
        anyhow::bail!("--batch, --epochs and --channels must be positive");
    }
    if !a.channels.is_multiple_of(2) {
        anyhow::bail!("--channels {} must be even (factorized reductions split channels in two)", a.channels);
    }
    let augment =
        Augment { crop_pad: a.crop_pad.unwrap_or(kind.crop_pad(shape.image_size)), flip: a.flip.unwrap_or(kind != DatasetKind::Mnist), cutout: a.cutout };
    Ok(RetrainConfig {
        space: arch.space(),
        arch: arch.to_arc_string(),
        dataset: kind,
        data_dir: a.data.data_dir.clone(),
        net: NetConfig {
            layers: a.layers,
            channels: a.channels,
            in_channels: shape.in_channels,
            image_size: shape.image_size,
            classes: shape.classes,
            aux_head: a.aux_weight > 0.0,
            dropout: a.dropout,
            drop_path: a.drop_path,
            width: a.width,
            macro_skips: Default::default(),
        },
        epochs: a.epochs,
        batch: a.batch,
        eval_batch: a.eval_batch,
        sgd: SgdConfig { lr: a.lr, momentum: a.momentum, nesterov: true, weight_decay: a.weight_decay, decoupled: a.decoupled_wd },
        lr_min: a.lr_min,
        lr_t0: a.lr_t0.unwrap_or(a.epochs as f64),
        lr_t_mul: a.lr_t_mul,
        grad_clip: a.grad_clip,
        label_smoothing: a.label_smoothing,
        aux_weight: a.aux_weight,
        augment,
        valid_size: a.valid_size,
        train_limit: a.train_limit,
        seed: a.seed,
        data_seed: None,
    })
}
