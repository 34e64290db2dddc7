//! `enas export`: a trained model as an ONNX file any runtime can load.
use crate::model::onnx::{INPUT, OPSET, OUTPUT};
use crate::train::checkpoint::write_bytes_atomic;
use crate::train::model_dir;
use anyhow::Result;
use candle_core::Device;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// ONNX, opset 17.
    Onnx,
}

#[derive(Args)]
pub struct ExportArgs {
    /// A directory written by `enas retrain`, or an `enas train` run (its retrain stage is read).
    #[arg(long, value_name = "DIR", visible_alias = "run")]
    model: PathBuf,
    /// The file format.
    #[arg(long, value_enum, default_value = "onnx")]
    format: Format,
    /// The file to write.
    #[arg(short = 'o', long = "out", visible_alias = "output", value_name = "FILE")]
    out: PathBuf,
}

pub fn run(a: &ExportArgs) -> Result<()> {
    let Format::Onnx = a.format;
    let trained = model_dir::open(&a.model, &Device::Cpu)?;
    let bytes = trained.setup.eval_net.to_onnx(&trained.cfg.net, &trained.input.mean, &trained.input.std, &trained.input.classes)?;
    write_bytes_atomic(&a.out, &bytes)?;
    let net = &trained.cfg.net;
    println!(
        "wrote {} ({} KiB): ONNX opset {OPSET}, input `{INPUT}` (N, {}, {}, {}) float pixels 0-255 (normalised inside), output `{OUTPUT}` (N, {}) for classes {}",
        a.out.display(),
        bytes.len().div_ceil(1024),
        net.in_channels,
        net.image_size,
        net.image_size,
        net.classes,
        trained.input.classes.join(", ")
    );
    Ok(())
}
