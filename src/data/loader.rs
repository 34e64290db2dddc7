//! Batches prepared on a background thread: shuffling, normalisation and
//! augmentation never hold up the training step.
use super::{Augment, ImageSet};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Batches kept ready ahead of the consumer.
const PREFETCH: usize = 4;

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    pub augment: Augment,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub shape: (usize, usize, usize, usize),
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn to_tensors(self, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let n = self.labels.len();
        Ok((Tensor::from_vec(self.images, self.shape, device)?, Tensor::from_vec(self.labels, n, device)?))
    }
}

pub fn batches_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// The random stream for one epoch's order and augmentation: a pure function
/// of (seed, epoch), so a resumed run draws exactly what an uninterrupted one would.
pub fn epoch_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xda7a_10ad);
    rng.set_stream(epoch);
    rng
}

pub struct Loader {
    rx: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
    len: usize,
}

impl Loader {
    pub fn new(set: Arc<ImageSet>, cfg: LoaderConfig, seed: u64, epoch: u64) -> Loader {
        let len = batches_per_epoch(set.len(), cfg.batch_size, cfg.drop_last);
        let (tx, rx) = sync_channel(PREFETCH);
        let handle = std::thread::spawn(move || {
            let mut rng = epoch_rng(seed, epoch);
            let mut order: Vec<usize> = (0..set.len()).collect();
            if cfg.shuffle {
                order.shuffle(&mut rng);
            }
            let (c, h, w) = (set.channels, set.height, set.width);
            let plane = h * w;
            let scale: Vec<f32> = cfg.std.iter().map(|s| 1.0 / (255.0 * s)).collect();
            let shift: Vec<f32> = cfg.mean.iter().zip(&cfg.std).map(|(m, s)| m / s).collect();
            let mut scratch = Vec::new();
            for chunk in order.chunks(cfg.batch_size) {
                if cfg.drop_last && chunk.len() < cfg.batch_size {
                    break;
                }
                let mut images = vec![0f32; chunk.len() * set.image_len()];
                for (dst, &i) in images.chunks_exact_mut(set.image_len()).zip(chunk) {
                    for (ch, (d, s)) in dst.chunks_exact_mut(plane).zip(set.image(i).chunks_exact(plane)).enumerate() {
                        for (d, &s) in d.iter_mut().zip(s) {
                            *d = s as f32 * scale[ch] - shift[ch];
                        }
                    }
                    if !cfg.augment.is_none() {
                        cfg.augment.apply(dst, &mut scratch, c, h, w, &mut rng);
                    }
                }
                let labels = chunk.iter().map(|&i| set.labels[i] as u32).collect();
                let batch = Batch { images, labels, shape: (chunk.len(), c, h, w) };
                if tx.send(batch).is_err() {
                    return; // consumer dropped the loader
                }
            }
        });
        Loader { rx, handle: Some(handle), len }
    }

    /// Batches this epoch yields in all.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Unblock the producer, then wait for it so no thread outlives the loader.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
