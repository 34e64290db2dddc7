//! Agreement between two scorings of the same architectures: rank
//! correlations with bootstrap intervals and the overlap of their top picks.
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Ranks from 1 (the lowest value), tied values sharing the mean of their ranks.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let shared = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = shared;
        }
        i = j + 1;
    }
    out
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// Spearman's rho: the correlation of the ranks; NaN where either scoring is all ties.
pub fn spearman_rho(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Kendall's tau-b: concordant minus discordant pairs over the pairs each
/// scoring orders, so ties lower neither side; NaN where either is all ties.
pub fn kendall_tau(x: &[f64], y: &[f64]) -> f64 {
    let (mut concordant, mut discordant, mut tied_x, mut tied_y) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            match (x[i].total_cmp(&x[j]), y[i].total_cmp(&y[j])) {
                (Ordering::Equal, Ordering::Equal) => {}
                (Ordering::Equal, _) => tied_x += 1.0,
                (_, Ordering::Equal) => tied_y += 1.0,
                (a, b) if a == b => concordant += 1.0,
                _ => discordant += 1.0,
            }
        }
    }
    let ordered = concordant + discordant;
    (concordant - discordant) / ((ordered + tied_x) * (ordered + tied_y)).sqrt()
}

/// The indices of the `k` best (highest) values, ties broken by index.
fn top(v: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// How many of the `k` best by `x` are among the `k` best by `y`.
pub fn top_k_overlap(x: &[f64], y: &[f64], k: usize) -> usize {
    let by_y = top(y, k);
    top(x, k).iter().filter(|i| by_y.contains(i)).count()
}

/// A statistic with its bootstrap interval.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    pub value: f64,
    /// The 2.5th and 97.5th percentiles of the statistic over resampled pairs.
    pub low: f64,
    pub high: f64,
}

/// `stat` of the pairs (x_i, y_i) with its 95% percentile bootstrap interval
/// over `resamples` draws of n pairs with replacement; draws where the
/// statistic is undefined (every pair tied) are left out.
pub fn bootstrap(x: &[f64], y: &[f64], stat: fn(&[f64], &[f64]) -> f64, resamples: usize, rng: &mut ChaCha8Rng) -> Interval {
    let n = x.len();
    let mut values = Vec::with_capacity(resamples);
    let (mut bx, mut by) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.gen_range(0..n);
            (bx[k], by[k]) = (x[i], y[i]);
        }
        let v = stat(&bx, &by);
        if v.is_finite() {
            values.push(v);
        }
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values.get(((values.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    Interval { value: stat(x, y), low: at(0.025), high: at(0.975) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn correlations_of_a_worked_example() {
        // 6 concordant and 4 discordant pairs; the squared rank differences sum to 16.
        let (x, y) = ([1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 4.0, 1.0, 2.0, 5.0]);
        assert!((kendall_tau(&x, &y) - 0.2).abs() < 1e-12);
        assert!((spearman_rho(&x, &y) - (1.0 - 6.0 * 16.0 / 120.0)).abs() < 1e-12);
        let reversed: Vec<f64> = x.iter().map(|v| -v).collect();
        assert_eq!(kendall_tau(&x, &reversed), -1.0);
        assert!((spearman_rho(&x, &reversed) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn ties_follow_tau_b_and_mean_ranks() {
        // 4 concordant, one pair tied in x only and one in y only: 4 / sqrt(5 * 5).
        let (x, y) = ([1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 2.0, 3.0]);
        assert!((kendall_tau(&x, &y) - 0.8).abs() < 1e-12);
        assert_eq!(ranks(&[0.5, 0.2, 0.5, 0.9]), vec![2.5, 1.0, 2.5, 4.0]);
        assert!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }

    #[test]
    fn top_overlap_counts_shared_picks() {
        let x = [0.9, 0.8, 0.1, 0.7, 0.2];
        let y = [0.1, 0.8, 0.9, 0.7, 0.2];
        assert_eq!(top_k_overlap(&x, &y, 2), 1);
        assert_eq!(top_k_overlap(&x, &y, 5), 5);
    }

    #[test]
    fn bootstrap_interval_brackets_the_estimate_and_repeats_with_its_seed() {
        let x: Vec<f64> = (0..30).map(|i| i as f64).collect();
        let y: Vec<f64> = x.iter().map(|v| v + 12.0 * ((v * 2.7).sin())).collect();
        let draw = |seed| bootstrap(&x, &y, kendall_tau, 500, &mut ChaCha8Rng::seed_from_u64(seed));
        let a = draw(7);
        assert!(a.low < a.value && a.value < a.high && a.high - a.low > 0.05, "{a:?}");
        assert_eq!(a, draw(7));
        let perfect = bootstrap(&x, &x, spearman_rho, 200, &mut ChaCha8Rng::seed_from_u64(1));
        assert!((perfect.low - 1.0).abs() < 1e-12 && (perfect.high - 1.0).abs() < 1e-12);
    }
}
