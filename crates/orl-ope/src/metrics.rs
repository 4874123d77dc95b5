//! How well estimates rank and value a set of policies against their true values: the DOPE
//! benchmark's metrics (Fu et al. 2021, "Benchmarks for Deep Off-Policy Evaluation", section 4.1).
//!
//! ```text
//! absolute error   mean_i |V_hat_i - V_i| / (max_j V_j - min_j V_j)   (values normalised to [0, 1])
//! Spearman rho     Pearson correlation of the ranks of V_hat and V (ties get mean ranks)
//! regret@1         (max_j V_j - V_{argmax_i V_hat_i}) / (max_j V_j - min_j V_j)
//! ```

/// DOPE metrics of one estimator over a set of policies.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RankMetrics {
    /// Mean absolute error of the normalised values.
    pub abs_error: f64,
    /// Spearman rank correlation.
    pub spearman: f64,
    /// Normalised regret of the policy the estimator ranks first.
    pub regret_at_1: f64,
}

/// Ranks (1-based, ties averaged).
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[idx[k]] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation; `NaN` when either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// The DOPE metrics of `estimates` against `truth` (same policy order); `None` with fewer than
/// two policies or when all true values are equal.
pub fn rank_metrics(estimates: &[f64], truth: &[f64]) -> Option<RankMetrics> {
    if estimates.len() != truth.len() || truth.len() < 2 {
        return None;
    }
    let lo = truth.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = truth.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 {
        return None;
    }
    let abs_error = estimates
        .iter()
        .zip(truth)
        .map(|(e, t)| (e - t).abs() / span)
        .sum::<f64>()
        / truth.len() as f64;
    let best = (0..estimates.len()).max_by(|&a, &b| estimates[a].total_cmp(&estimates[b]))?;
    Some(RankMetrics {
        abs_error,
        spearman: spearman(estimates, truth),
        regret_at_1: (hi - truth[best]) / span,
    })
}
