//! `enas predict --model DIR IMAGE...`: the most likely classes of images, by
//! name, from a trained model.
use crate::data::folder::{self, Shape};
use crate::model::{onnx, Ctx};
use crate::train::model_dir;
use anyhow::{Context, Result};
use candle_core::{Tensor, D};
use clap::Args;
use rand::SeedableRng;
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    /// A directory written by `enas retrain`, or an `enas train` run (its retrain stage is read).
    #[arg(long, value_name = "DIR", visible_alias = "run", required_unless_present = "onnx")]
    model: Option<PathBuf>,
    /// Run this ONNX file (as `enas export` writes it) instead; the class names come with it.
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    onnx: Option<PathBuf>,
    /// PNG or JPEG files.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Classes to show per image, most likely first.
    #[arg(long, value_parser = super::ranges::count, default_value_t = 3)]
    top: usize,
    /// One JSON object per image, a line each.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: super::DeviceArg,
}

/// Logits of a batch of images (pixels, count), from the model or the ONNX file.
type Logits = Box<dyn Fn(Vec<u8>, usize) -> Result<Tensor>>;

pub fn run(a: &PredictArgs) -> Result<()> {
    let device = a.device.open()?;
    let (shape, classes, logits): (Shape, Vec<String>, Logits) = match (&a.model, &a.onnx) {
        (_, Some(path)) => {
            let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
            let model = onnx::read::model(&bytes).with_context(|| format!("{}: not an ONNX model enas can run", path.display()))?;
            let [channels, size, side] = model.input_dims[..] else { unreachable!("read checks the input's rank") };
            if size != side {
                anyhow::bail!("{}: the input is {size}x{side}; enas models take square images", path.display());
            }
            let classes = model.metadata.get(onnx::CLASSES).and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
            let device = device.clone();
            // The graph normalises its input itself: pixels 0-255 go in as they are.
            let run = move |pixels: Vec<u8>, n: usize| -> Result<Tensor> {
                let x = Tensor::from_vec(pixels.iter().map(|&p| p as f32).collect::<Vec<f32>>(), (n, channels, size, size), &device)?;
                onnx::run::run(&model, &x)
            };
            (Shape { channels, size }, classes, Box::new(run))
        }
        (Some(dir), None) => {
            let trained = model_dir::open(dir, &device)?;
            let input = trained.input.clone();
            let shape = Shape { channels: input.channels, size: input.image_size };
            let plane = shape.size * shape.size;
            let device = device.clone();
            let run = move |pixels: Vec<u8>, n: usize| -> Result<Tensor> {
                // As the loader normalises: pixels / 255, then per channel (x - mean) / std.
                let c = |i: usize| (i / plane) % shape.channels;
                let x: Vec<f32> = pixels.iter().enumerate().map(|(i, &p)| (p as f32 / 255.0 - input.mean[c(i)]) / input.std[c(i)]).collect();
                let x = Tensor::from_vec(x, (n, shape.channels, shape.size, shape.size), &device)?;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
                Ok(trained.setup.eval_net.forward(&x, &mut Ctx { train: false, rng: &mut rng, progress: 1.0 })?.logits)
            };
            (shape, trained.input.classes.clone(), Box::new(run))
        }
        (None, None) => unreachable!("clap requires --model or --onnx"),
    };
    let mut pixels = Vec::with_capacity(a.images.len() * shape.channels * shape.size * shape.size);
    for path in &a.images {
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let decoded = folder::decode(&bytes, shape).map_err(|why| anyhow::anyhow!("{}: not a readable image: {why}", path.display()))?;
        if let Ok((w, h)) = image::image_dimensions(path) {
            if (w as usize, h as usize) != (shape.size, shape.size) && !a.json {
                eprintln!("note: {}: {w}x{h} resized to the model's {}x{}", path.display(), shape.size, shape.size);
            }
        }
        pixels.extend(decoded);
    }
    let logits = logits(pixels, a.images.len())?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
    let name = |c: usize| classes.get(c).cloned().unwrap_or_else(|| c.to_string());
    for (path, p) in a.images.iter().zip(probs) {
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&i, &j| p[j].total_cmp(&p[i]));
        order.truncate(a.top);
        if a.json {
            let top: Vec<_> = order.iter().map(|&c| serde_json::json!({"class": name(c), "index": c, "probability": p[c]})).collect();
            println!("{}", serde_json::json!({"image": path.display().to_string(), "top": top}));
        } else {
            let top: Vec<String> = order.iter().map(|&c| format!("{} {:.1}%", name(c), 100.0 * p[c])).collect();
            println!("{}: {}", path.display(), top.join(", "));
        }
    }
    Ok(())
}
