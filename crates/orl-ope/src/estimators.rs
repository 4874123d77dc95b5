//! The importance-sampling family and doubly robust estimators, as pure functions of prepared
//! trajectories (no tensors): easy to check against exact values on tabular MDPs.
//!
//! Notation (episode `i`, step `t`, `T_i` steps, discount `gamma`):
//! `rho_t = pi(a_t|s_t) / mu(a_t|s_t)`, cumulative weight `w_t = prod_{k<=t} rho_k` (kept in log
//! space), `w_{-1} = 1`; optional clipping replaces `w_t` by `min(w_t, c)`.
//!
//! ```text
//! IS     (Precup et al. 2000)  V = 1/n sum_i w_{T_i-1} G_i,         G_i = sum_t gamma^t r_t
//! WIS                          V = sum_i w_{T_i-1} G_i / sum_i w_{T_i-1}
//! PDIS   (Precup et al. 2000)  V = 1/n sum_i sum_t gamma^t w_t r_t
//! WPDIS                        V = sum_t gamma^t sum_i w_t^i r_t^i / sum_i w_t^i
//! DR     (Jiang & Li 2016, eq. 10, unrolled)
//!        V = 1/n sum_i sum_t gamma^t [ w_t r_t - (w_t Q(s_t,a_t) - w_{t-1} V(s_t)) ]
//! WDR    (Thomas & Brunskill 2016, eq. 2): DR with w_t^i replaced by w_t^i / sum_j w_t^j
//!        and w_{-1}^i = 1/n, summed over i.
//! ```
//!
//! Episodes that end before others are padded with an absorbing state (reward 0, ratio 1, Q =
//! V = 0), so their weight stays in the per-step normalisers of the weighted estimators, the
//! usual convention for per-decision weighting of variable-length episodes.

/// One logged episode, ready for estimation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trajectory {
    /// `r_t`.
    pub rewards: Vec<f64>,
    /// `log pi(a_t|s_t) - log mu(a_t|s_t)`.
    pub log_ratios: Vec<f64>,
    /// `Q(s_t, a_t)` of a fitted model (DR and WDR only; empty otherwise).
    pub q: Vec<f64>,
    /// `V(s_t) = E_{a~pi} Q(s_t, a)` of the same model (DR and WDR only).
    pub v: Vec<f64>,
}

impl Trajectory {
    /// Number of steps.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }
    /// Whether the episode has no step.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }
    /// Discounted return `sum_t gamma^t r_t`.
    pub fn discounted_return(&self, gamma: f64) -> f64 {
        let mut g = 0.0;
        for &r in self.rewards.iter().rev() {
            g = r + gamma * g;
        }
        g
    }
    /// Cumulative log-weights `log w_t`, clipped at `log clip` when given.
    pub fn log_weights(&self, clip: Option<f64>) -> Vec<f64> {
        let cap = clip.map(f64::ln);
        let mut acc = 0.0;
        self.log_ratios
            .iter()
            .map(|&l| {
                acc += l;
                cap.map_or(acc, |c| acc.min(c))
            })
            .collect()
    }
}

/// Which estimator of the importance-sampling family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsKind {
    /// Whole-episode importance sampling.
    Is,
    /// Self-normalised whole-episode importance sampling.
    Wis,
    /// Per-decision importance sampling.
    Pdis,
    /// Weighted per-decision importance sampling.
    Wpdis,
    /// Doubly robust (needs `q` and `v`).
    Dr,
    /// Weighted doubly robust (needs `q` and `v`).
    Wdr,
}

/// Why an estimate has no value.
#[derive(Debug, Clone, PartialEq)]
pub enum Undefined {
    /// No episode.
    NoData,
    /// Every importance weight is zero (the policy never takes the logged actions).
    ZeroWeights,
    /// A weight overflowed `f64` (`log w` given); clip or use a weighted estimator.
    Overflow(f64),
    /// DR/WDR without a fitted `q`/`v`.
    NoModel,
}

impl std::fmt::Display for Undefined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoData => write!(f, "no episode to estimate from"),
            Self::ZeroWeights => write!(
                f,
                "all importance weights are zero: the policy gives probability 0 to the logged actions"
            ),
            Self::Overflow(lw) => write!(
                f,
                "an importance weight overflows (log w = {lw:.1}); use --clip or a weighted estimator"
            ),
            Self::NoModel => write!(f, "needs a fitted Q (FQE) for DR/WDR"),
        }
    }
}

/// `log(f64::MAX)`: beyond it `exp` overflows.
const LOG_MAX: f64 = 709.0;

/// The estimate of `kind` on `eps`.
pub fn estimate(
    kind: IsKind,
    eps: &[&Trajectory],
    gamma: f64,
    clip: Option<f64>,
) -> Result<f64, Undefined> {
    if eps.is_empty() {
        return Err(Undefined::NoData);
    }
    let lws: Vec<Vec<f64>> = eps.iter().map(|e| e.log_weights(clip)).collect();
    let n = eps.len() as f64;
    match kind {
        IsKind::Is | IsKind::Wis => {
            let last: Vec<f64> = lws
                .iter()
                .map(|l| l.last().copied().unwrap_or(0.0))
                .collect();
            let g: Vec<f64> = eps.iter().map(|e| e.discounted_return(gamma)).collect();
            if kind == IsKind::Is {
                let mut s = 0.0;
                for (lw, g) in last.iter().zip(&g) {
                    if *lw > LOG_MAX {
                        return Err(Undefined::Overflow(*lw));
                    }
                    s += lw.exp() * g;
                }
                Ok(s / n)
            } else {
                let w = normalised(&last).ok_or(Undefined::ZeroWeights)?;
                Ok(w.iter().zip(&g).map(|(w, g)| w * g).sum())
            }
        }
        IsKind::Pdis | IsKind::Dr => {
            if kind == IsKind::Dr
                && eps
                    .iter()
                    .any(|e| e.q.len() != e.len() || e.v.len() != e.len())
            {
                return Err(Undefined::NoModel);
            }
            let mut total = 0.0;
            for (e, lw) in eps.iter().zip(&lws) {
                let (mut disc, mut prev) = (1.0, 1.0);
                for (t, &l) in lw.iter().enumerate() {
                    if l > LOG_MAX {
                        return Err(Undefined::Overflow(l));
                    }
                    let w = l.exp();
                    let term = if kind == IsKind::Dr {
                        w * e.rewards[t] - (w * e.q[t] - prev * e.v[t])
                    } else {
                        w * e.rewards[t]
                    };
                    total += disc * term;
                    disc *= gamma;
                    prev = w;
                }
            }
            Ok(total / n)
        }
        IsKind::Wpdis | IsKind::Wdr => {
            if kind == IsKind::Wdr
                && eps
                    .iter()
                    .any(|e| e.q.len() != e.len() || e.v.len() != e.len())
            {
                return Err(Undefined::NoModel);
            }
            let horizon = eps.iter().map(|e| e.len()).max().unwrap_or(0);
            // Held (absorbing) log-weight of episode i at step t.
            let held = |i: usize, t: usize| -> f64 {
                let l = &lws[i];
                if l.is_empty() {
                    0.0
                } else {
                    l[t.min(l.len() - 1)]
                }
            };
            let mut prev_w: Vec<f64> = vec![1.0 / n; eps.len()];
            let (mut total, mut disc) = (0.0, 1.0);
            for t in 0..horizon {
                let col: Vec<f64> = (0..eps.len()).map(|i| held(i, t)).collect();
                let w = normalised(&col).ok_or(Undefined::ZeroWeights)?;
                for (i, e) in eps.iter().enumerate() {
                    if t < e.len() {
                        let term = if kind == IsKind::Wdr {
                            w[i] * e.rewards[t] - (w[i] * e.q[t] - prev_w[i] * e.v[t])
                        } else {
                            w[i] * e.rewards[t]
                        };
                        total += disc * term;
                    }
                }
                prev_w = w;
                disc *= gamma;
            }
            Ok(total)
        }
    }
}

/// `w_i / sum_j w_j` from log-weights, computed with the maximum subtracted; `None` when every
/// weight is zero (all log-weights `-inf`).
pub fn normalised(log_w: &[f64]) -> Option<Vec<f64>> {
    let m = log_w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return None;
    }
    let w: Vec<f64> = log_w.iter().map(|l| (l - m).exp()).collect();
    let s: f64 = w.iter().sum();
    Some(w.into_iter().map(|x| x / s).collect())
}

/// Diagnostics of the whole-episode weights `w_{T_i-1}`: `(effective sample size
/// (sum w)^2 / sum w^2, largest normalised weight max w / sum w)`; `None` if all are zero.
pub fn weight_stats(eps: &[&Trajectory], clip: Option<f64>) -> Option<(f64, f64)> {
    let last: Vec<f64> = eps
        .iter()
        .map(|e| e.log_weights(clip).last().copied().unwrap_or(0.0))
        .collect();
    let w = normalised(&last)?;
    let ess = 1.0 / w.iter().map(|x| x * x).sum::<f64>();
    let max = w.iter().copied().fold(0.0, f64::max);
    Some((ess, max))
}
