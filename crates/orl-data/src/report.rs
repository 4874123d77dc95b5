//! Dataset report: what `orl inspect` prints.
//!
//! Counts, episode lengths and ends, the return distribution (percentiles and histogram),
//! reward and per-dimension observation statistics, action coverage (per-dimension histograms or
//! per-action counts), data-quality checks (NaN/inf per column, duplicate transitions, constant
//! observation dimensions, actions outside the space) and, when reference scores are known, the
//! D4RL-normalized return of the data. All statistics are float64; `std` is the population std.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::Serialize;

use crate::dataset::{Actions, Dataset};
use crate::meta::ActionSpace;

/// Mean, population std, min and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub count: usize,
    /// Mean.
    pub mean: f64,
    /// Population standard deviation (ddof = 0).
    pub std: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Summary {
    /// Two-pass mean and std over finite values (non-finite values are skipped and reported elsewhere).
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Self {
        let (mut n, mut sum, mut min, mut max) = (0usize, 0f64, f64::INFINITY, f64::NEG_INFINITY);
        for x in values.clone().filter(|x| x.is_finite()) {
            n += 1;
            sum += x;
            min = min.min(x);
            max = max.max(x);
        }
        if n == 0 {
            return Self {
                count: 0,
                mean: f64::NAN,
                std: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let mean = sum / n as f64;
        let var = values
            .filter(|x| x.is_finite())
            .map(|x| (x - mean) * (x - mean))
            .sum::<f64>()
            / n as f64;
        Self {
            count: n,
            mean,
            std: var.sqrt(),
            min,
            max,
        }
    }
}

/// A histogram with `counts.len()` equal-width bins over `[lo, hi]` (the last bin is closed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    /// Left edge of the first bin.
    pub lo: f64,
    /// Right edge of the last bin.
    pub hi: f64,
    /// Counts per bin; values outside `[lo, hi]` are not counted.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Bins `values` into `bins` bins over `[lo, hi]`.
    pub fn new(values: impl Iterator<Item = f64>, lo: f64, hi: f64, bins: usize) -> Self {
        let mut counts = vec![0u64; bins.max(1)];
        let width = (hi - lo) / counts.len() as f64;
        for x in values.filter(|x| x.is_finite() && *x >= lo && *x <= hi) {
            let k = if width > 0.0 {
                (((x - lo) / width) as usize).min(counts.len() - 1)
            } else {
                0
            };
            counts[k] += 1;
        }
        Self { lo, hi, counts }
    }
}

/// Statistics of one observation or action dimension.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DimStats {
    /// Dimension index.
    pub dim: usize,
    /// Summary over rows.
    #[serde(flatten)]
    pub summary: Summary,
}

/// How episodes end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpisodeEnds {
    /// Last row terminal.
    pub terminal: usize,
    /// Last row timeout (and not terminal).
    pub timeout: usize,
    /// Neither flag (log cut mid-episode).
    pub unterminated: usize,
    /// Of those, whether the final episode of the dataset is one (D4RL's trailing episode).
    pub trailing_unterminated: bool,
}

/// Action coverage.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActionCoverage {
    /// Per-dimension statistics and histograms.
    Continuous {
        /// Statistics per dimension.
        dims: Vec<DimStats>,
        /// Histogram per dimension over the space bounds (or the data range when unbounded).
        histograms: Vec<Histogram>,
        /// Rows with at least one value outside the space bounds (0 when bounds are unknown).
        rows_out_of_bounds: usize,
    },
    /// Counts per action.
    Discrete {
        /// `counts[a]` rows took action `a`.
        counts: Vec<u64>,
    },
}

/// Data-quality checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Non-finite values per column (only columns with some).
    pub nonfinite: Vec<(String, usize)>,
    /// Transitions `(s, a, r, s', terminal)` identical to an earlier one (by 64-bit hash).
    pub duplicate_transitions: usize,
    /// Observation dimensions with zero variance.
    pub constant_observation_dims: Vec<usize>,
    /// Rows whose `s'` is unknown (null).
    pub rows_without_next_observation: usize,
    /// Rows usable as one-step transitions: `s'` known, or the row is terminal.
    pub sampleable_transitions: usize,
    /// Every reward the same and no terminal row ([`Dataset::uninformative_rewards`]).
    pub uninformative_rewards: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Environment id, when known.
    pub env_id: Option<String>,
    /// Number of transitions.
    pub transitions: usize,
    /// Number of episodes.
    pub episodes: usize,
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action space.
    pub action_space: ActionSpace,
    /// Episode lengths.
    pub episode_length: Summary,
    /// Median episode length.
    pub episode_length_median: f64,
    /// How episodes end.
    pub episode_ends: EpisodeEnds,
    /// Undiscounted episode returns.
    pub returns: Summary,
    /// Return percentiles `(p, value)` for p in 0, 5, 25, 50, 75, 95, 100 (linear interpolation, NumPy's default).
    pub return_percentiles: Vec<(f64, f64)>,
    /// Return histogram (20 bins over the observed range).
    pub return_histogram: Histogram,
    /// D4RL-normalized mean return `100 * (R - ref_min) / (ref_max - ref_min)`, when references are known.
    pub normalized_return: Option<f64>,
    /// Rewards.
    pub rewards: Summary,
    /// Sum of rewards.
    pub reward_sum: f64,
    /// Per-dimension observation statistics.
    pub observations: Vec<DimStats>,
    /// Action coverage.
    pub actions: ActionCoverage,
    /// Data quality.
    pub quality: Quality,
}

/// Linear-interpolation percentile of sorted data (NumPy's default method).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = p / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Per-dimension statistics of a row-major `[N, dim]` buffer, optionally restricted to `rows`.
pub fn dim_stats(
    values: &[f32],
    dim: usize,
    keep: Option<&dyn Fn(usize) -> bool>,
) -> Vec<DimStats> {
    let n = values.len() / dim.max(1);
    (0..dim)
        .map(|d| {
            let it = (0..n)
                .filter(|&i| keep.is_none_or(|k| k(i)))
                .map(move |i| f64::from(values[i * dim + d]));
            DimStats {
                dim: d,
                summary: Summary::of(it),
            }
        })
        .collect()
}

impl Report {
    /// Computes the report.
    pub fn new(ds: &Dataset) -> Self {
        let meta = ds.meta();
        let od = ds.obs_dim();
        let c = ds.columns();
        let eps: Vec<_> = ds.episodes().collect();
        let lens: Vec<f64> = eps.iter().map(|e| e.len() as f64).collect();
        let mut sorted_lens = lens.clone();
        sorted_lens.sort_by(f64::total_cmp);
        let returns = ds.episode_returns();
        let mut sorted = returns.clone();
        sorted.sort_by(f64::total_cmp);
        let ret_summary = Summary::of(returns.iter().copied());
        let ends = EpisodeEnds {
            terminal: eps.iter().filter(|e| e.terminal).count(),
            timeout: eps.iter().filter(|e| e.timeout && !e.terminal).count(),
            unterminated: eps.iter().filter(|e| e.is_unterminated()).count(),
            trailing_unterminated: eps.last().is_some_and(|e| e.is_unterminated()),
        };
        let observations = dim_stats(&c.observations, od, None);
        let actions = match (&c.actions, &meta.action_space) {
            (Actions::Continuous { dim, values }, ActionSpace::Continuous { low, high, .. }) => {
                let dims = dim_stats(values, *dim, None);
                let histograms = dims
                    .iter()
                    .map(|s| {
                        let lo = low
                            .as_ref()
                            .map(|l| l[s.dim])
                            .filter(|x| x.is_finite())
                            .unwrap_or(s.summary.min);
                        let hi = high
                            .as_ref()
                            .map(|h| h[s.dim])
                            .filter(|x| x.is_finite())
                            .unwrap_or(s.summary.max);
                        Histogram::new(
                            values
                                .iter()
                                .skip(s.dim)
                                .step_by(*dim)
                                .map(|&x| f64::from(x)),
                            lo,
                            hi,
                            20,
                        )
                    })
                    .collect();
                let rows_out_of_bounds = match (low, high) {
                    (Some(lo), Some(hi)) => values
                        .chunks_exact(*dim)
                        .filter(|row| {
                            row.iter()
                                .enumerate()
                                .any(|(d, &x)| f64::from(x) < lo[d] || f64::from(x) > hi[d])
                        })
                        .count(),
                    _ => 0,
                };
                ActionCoverage::Continuous {
                    dims,
                    histograms,
                    rows_out_of_bounds,
                }
            }
            (Actions::Discrete(v), ActionSpace::Discrete { n }) => {
                let mut counts = vec![0u64; *n];
                for &a in v {
                    counts[a as usize] += 1;
                }
                ActionCoverage::Discrete { counts }
            }
            _ => unreachable!("validated dataset"),
        };
        let count_nonfinite = |v: &[f32]| v.iter().filter(|x| !x.is_finite()).count();
        let mut nonfinite = vec![
            ("observation".to_string(), count_nonfinite(&c.observations)),
            (
                "next_observation".to_string(),
                count_nonfinite(&c.next_observations),
            ),
            ("reward".to_string(), count_nonfinite(&c.rewards)),
        ];
        if let Actions::Continuous { values, .. } = &c.actions {
            nonfinite.push(("action".into(), count_nonfinite(values)));
        }
        if let Some(lp) = &c.behavior_log_prob {
            nonfinite.push((
                "behavior_log_prob".into(),
                lp.iter().filter(|x| !x.is_finite()).count(),
            ));
        }
        nonfinite.retain(|(_, n)| *n > 0);
        let without_next = (0..ds.len()).filter(|&i| !ds.next_valid(i)).count();
        let sampleable = (0..ds.len())
            .filter(|&i| ds.next_valid(i) || c.terminals[i])
            .count();
        let quality = Quality {
            nonfinite,
            duplicate_transitions: duplicates(ds),
            constant_observation_dims: observations
                .iter()
                .filter(|s| s.summary.count > 0 && s.summary.std == 0.0)
                .map(|s| s.dim)
                .collect(),
            rows_without_next_observation: without_next,
            sampleable_transitions: sampleable,
            uninformative_rewards: ds.uninformative_rewards(),
        };
        Self {
            env_id: meta.env_id.clone(),
            transitions: ds.len(),
            episodes: eps.len(),
            obs_dim: od,
            action_space: meta.action_space.clone(),
            episode_length: Summary::of(lens.iter().copied()),
            episode_length_median: percentile(&sorted_lens, 50.0),
            episode_ends: ends,
            return_percentiles: [0.0, 5.0, 25.0, 50.0, 75.0, 95.0, 100.0]
                .iter()
                .map(|&p| (p, percentile(&sorted, p)))
                .collect(),
            return_histogram: Histogram::new(
                returns.iter().copied(),
                ret_summary.min,
                ret_summary.max,
                20,
            ),
            normalized_return: meta.normalized_score(ret_summary.mean),
            returns: ret_summary,
            rewards: Summary::of(c.rewards.iter().map(|&r| f64::from(r))),
            reward_sum: c.rewards.iter().map(|&r| f64::from(r)).sum(),
            observations,
            actions,
            quality,
        }
    }
}

fn duplicates(ds: &Dataset) -> usize {
    let c = ds.columns();
    let od = ds.obs_dim();
    let mut seen: HashMap<u64, ()> = HashMap::with_capacity(ds.len());
    let mut dup = 0;
    for i in 0..ds.len() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for x in &c.observations[i * od..(i + 1) * od] {
            x.to_bits().hash(&mut h);
        }
        match &c.actions {
            Actions::Continuous { dim, values } => values[i * dim..(i + 1) * dim]
                .iter()
                .for_each(|x| x.to_bits().hash(&mut h)),
            Actions::Discrete(v) => v[i].hash(&mut h),
        }
        c.rewards[i].to_bits().hash(&mut h);
        for x in &c.next_observations[i * od..(i + 1) * od] {
            x.to_bits().hash(&mut h);
        }
        c.terminals[i].hash(&mut h);
        if seen.insert(h.finish(), ()).is_some() {
            dup += 1;
        }
    }
    dup
}

fn fmt_summary(s: &Summary) -> String {
    format!(
        "mean {:.4}  std {:.4}  min {:.4}  max {:.4}",
        s.mean, s.std, s.min, s.max
    )
}

fn bar(count: u64, max: u64, width: usize) -> String {
    let n = if max == 0 {
        0
    } else {
        (count as f64 / max as f64 * width as f64).round() as usize
    };
    "#".repeat(n)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "environment      {}",
            self.env_id.as_deref().unwrap_or("(unknown)")
        )?;
        writeln!(
            f,
            "transitions      {} ({} sampleable as one-step transitions)",
            self.transitions, self.quality.sampleable_transitions
        )?;
        writeln!(f, "episodes         {}", self.episodes)?;
        let e = &self.episode_ends;
        writeln!(
            f,
            "episode ends     {} terminal, {} timeout, {} unterminated{}",
            e.terminal,
            e.timeout,
            e.unterminated,
            if e.trailing_unterminated {
                " (incl. the trailing episode)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "episode length   {}  median {:.1}",
            fmt_summary(&self.episode_length),
            self.episode_length_median
        )?;
        writeln!(f, "return           {}", fmt_summary(&self.returns))?;
        let pct: Vec<String> = self
            .return_percentiles
            .iter()
            .map(|(p, v)| format!("p{p:.0} {v:.2}"))
            .collect();
        writeln!(f, "                 {}", pct.join("  "))?;
        if let Some(n) = self.normalized_return {
            writeln!(
                f,
                "normalized score {n:.1} (D4RL: 0 = random, 100 = expert)"
            )?;
        }
        writeln!(
            f,
            "reward           {}  sum {:.4}",
            fmt_summary(&self.rewards),
            self.reward_sum
        )?;
        let h = &self.return_histogram;
        let maxc = h.counts.iter().copied().max().unwrap_or(0);
        writeln!(f, "return histogram")?;
        let w = (h.hi - h.lo) / h.counts.len() as f64;
        for (k, &c) in h.counts.iter().enumerate() {
            writeln!(
                f,
                "  {:>12.2} .. {:>12.2} {:>7} {}",
                h.lo + w * k as f64,
                h.lo + w * (k + 1) as f64,
                c,
                bar(c, maxc, 40)
            )?;
        }
        writeln!(f, "observation dims ({})", self.obs_dim)?;
        for s in &self.observations {
            writeln!(f, "  [{:>3}] {}", s.dim, fmt_summary(&s.summary))?;
        }
        match &self.actions {
            ActionCoverage::Continuous {
                dims,
                histograms,
                rows_out_of_bounds,
            } => {
                writeln!(
                    f,
                    "action dims ({}), {rows_out_of_bounds} row(s) outside the space bounds",
                    dims.len()
                )?;
                for (s, h) in dims.iter().zip(histograms) {
                    let m = h.counts.iter().copied().max().unwrap_or(0);
                    let spark: String = h
                        .counts
                        .iter()
                        .map(|&c| {
                            const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
                            if c == 0 {
                                ' '
                            } else {
                                LEVELS[((c as f64 / m as f64) * 7.0).round() as usize]
                            }
                        })
                        .collect();
                    writeln!(
                        f,
                        "  [{:>3}] {}  [{:.2}, {:.2}] |{spark}|",
                        s.dim,
                        fmt_summary(&s.summary),
                        h.lo,
                        h.hi
                    )?;
                }
            }
            ActionCoverage::Discrete { counts } => {
                let total: u64 = counts.iter().sum();
                let m = counts.iter().copied().max().unwrap_or(0);
                writeln!(f, "actions ({} discrete)", counts.len())?;
                for (a, &c) in counts.iter().enumerate() {
                    writeln!(
                        f,
                        "  {a:>4} {c:>9} ({:>5.1}%) {}",
                        100.0 * c as f64 / total.max(1) as f64,
                        bar(c, m, 40)
                    )?;
                }
            }
        }
        let q = &self.quality;
        writeln!(f, "quality")?;
        if q.nonfinite.is_empty() {
            writeln!(f, "  non-finite values      none")?;
        } else {
            for (col, n) in &q.nonfinite {
                writeln!(f, "  non-finite values      {n} in `{col}`")?;
            }
        }
        writeln!(f, "  duplicate transitions  {}", q.duplicate_transitions)?;
        writeln!(
            f,
            "  constant obs dims      {:?}",
            q.constant_observation_dims
        )?;
        write!(
            f,
            "  rows without s'        {}",
            q.rows_without_next_observation
        )?;
        if q.uninformative_rewards {
            write!(
                f,
                "\n  reward signal          none: every reward is {} and no row is terminal, so every \
                 action has the same value (no method can improve on behaviour cloning here)",
                self.rewards.mean
            )?;
        }
        Ok(())
    }
}
