//! Seeded percentile bootstrap (Efron & Tibshirani 1993, ch. 13) over independent units
//! (episodes, or initial states for FQE and model-based estimates).

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Standard deviation of the resampled estimates (the bootstrap standard error).
    pub std_err: f64,
    /// Resamples whose estimate was defined and finite.
    pub resamples: usize,
}

/// Resamples `n` units with replacement `resamples` times (seeded), evaluates `f` on each
/// resample's indices and returns the central `level` percentile interval. Resamples on which
/// `f` is undefined or not finite are dropped; `None` when fewer than half remain.
pub fn bootstrap(
    n: usize,
    resamples: usize,
    level: f64,
    seed: u64,
    mut f: impl FnMut(&[usize]) -> Option<f64>,
) -> Option<Interval> {
    if n == 0 || resamples == 0 {
        return None;
    }
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut idx = vec![0usize; n];
    let mut vals = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for i in idx.iter_mut() {
            *i = rng.random_range(0..n);
        }
        if let Some(v) = f(&idx).filter(|v| v.is_finite()) {
            vals.push(v);
        }
    }
    if vals.len() * 2 < resamples {
        return None;
    }
    vals.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (vals.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        vals[lo] + (vals[hi] - vals[lo]) * (pos - lo as f64)
    };
    let alpha = (1.0 - level) / 2.0;
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len().max(2) as f64;
    Some(Interval {
        low: q(alpha),
        high: q(1.0 - alpha),
        std_err: var.sqrt(),
        resamples: vals.len(),
    })
}

/// The bootstrap interval of a mean of per-unit values.
pub fn bootstrap_mean(values: &[f64], resamples: usize, level: f64, seed: u64) -> Option<Interval> {
    bootstrap(values.len(), resamples, level, seed, |idx| {
        Some(idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64)
    })
}
