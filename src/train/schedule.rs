//! Learning-rate schedules: cosine annealing with warm restarts (SGDR,
//! Loshchilov & Hutter 2017), as the ENAS code's `lr_cosine` with T0 and Tmul.
/// `lr_min + (lr_max - lr_min) (1 + cos(pi t / T_i)) / 2`, restarting after
/// T0, T0 Tmul, T0 Tmul^2, ... epochs. With T0 = total epochs it is plain cosine annealing.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Cosine {
    pub lr_max: f64,
    pub lr_min: f64,
    pub t0: f64,
    pub t_mul: f64,
}

impl Cosine {
    /// Learning rate at `epoch`, a fractional epoch count from the start.
    pub fn at(&self, epoch: f64) -> f64 {
        let (mut start, mut period) = (0.0, self.t0.max(1e-9));
        while epoch >= start + period {
            start += period;
            period *= self.t_mul.max(1.0);
        }
        let rate = (epoch - start) / period;
        self.lr_min + 0.5 * (self.lr_max - self.lr_min) * (1.0 + (std::f64::consts::PI * rate).cos())
    }
}
