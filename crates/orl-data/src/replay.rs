//! Replay: seeded sampling of named [`Batch`]es from a [`Dataset`].
//!
//! A row `i` is *sampleable* when its `s'` is known or it is terminal (a terminal transition
//! never bootstraps, so its `s'` is irrelevant). Strategies:
//!
//! * [`Sampling::Uniform`]: every sampleable row with equal probability.
//! * [`Sampling::ReturnWeighted`]: rows of episode `k` with probability proportional to
//!   `exp((G_k - G_max) / (T * (G_max - G_min)))`, return-based trajectory weighting in the spirit
//!   of Hong et al. 2023, "Beyond Uniform Sampling: Offline RL with Imbalanced Datasets".
//! * [`Sampling::StratifiedByReturn`]: episodes split into `bins` equal-count return quantiles;
//!   each bin receives the same probability mass, shared uniformly by its rows, so a few good
//!   episodes are not drowned by many poor ones.
//!
//! With `n_step > 1`, the reward is the discounted sum `sum_{j<k} gamma^j r_{i+j}` over
//! `k <= n` steps, stopping early at the episode's end or its first row without known `s'`;
//! `next_observations` is the `s'` of the last summed row and `discounts = gamma^k`, so the
//! target is `rewards + discounts * (1 - terminals) * V(next_observations)`.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::dataset::{Actions, Dataset};
use crate::error::{DataError, Result};

/// How rows are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Uniform over sampleable rows.
    Uniform,
    /// Return-weighted over episodes with temperature `T` (relative to the return range).
    ReturnWeighted {
        /// Temperature; smaller concentrates on the best episodes. Must be > 0.
        temperature: f64,
    },
    /// Equal mass for each of `bins` return-quantile strata of episodes.
    StratifiedByReturn {
        /// Number of strata (at least 1).
        bins: usize,
    },
}

/// Reward transform applied to every reward before n-step summation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RewardTransform {
    /// Leave rewards as stored.
    None,
    /// `r * scale + shift`.
    Affine {
        /// Multiplier.
        scale: f32,
        /// Offset.
        shift: f32,
    },
    /// IQL/CORL's locomotion scaling `r * max_episode_steps / (G_max - G_min)` over episodes that
    /// end in a terminal or a timeout (Kostrikov et al. 2021, appendix B; CORL `iql.py`
    /// `modify_reward`, where `max_episode_steps` is 1000).
    ReturnRange {
        /// The numerator, 1000 for D4RL locomotion.
        max_episode_steps: f32,
    },
}

/// Replay configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Sampling strategy. Default uniform, as d3rlpy and CORL sample.
    pub sampling: Sampling,
    /// Steps per return. Default 1 (one-step TD, as every algorithm in orl's papers uses).
    pub n_step: usize,
    /// Discount used for n-step sums and `discounts`. Default 0.99, the discount of D4RL
    /// benchmarks in the CQL, IQL, BCQ and TD3+BC papers.
    pub gamma: f32,
    /// Standardise observations with the dataset's mean and std. Default false (CORL enables
    /// it per algorithm; d3rlpy leaves it off).
    pub normalize_observations: bool,
    /// Added to the observation std before dividing. Default 1e-3, CORL's `compute_mean_std(eps=1e-3)`.
    pub obs_std_eps: f32,
    /// Reward transform. Default none.
    pub reward_transform: RewardTransform,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            sampling: Sampling::Uniform,
            n_step: 1,
            gamma: 0.99,
            normalize_observations: false,
            obs_std_eps: 1e-3,
            reward_transform: RewardTransform::None,
        }
    }
}

/// A batch of `B` transitions. Every buffer is row-major and reused by [`Replay::sample_into`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// `B`.
    pub batch_size: usize,
    /// Observation dimension.
    pub obs_dim: usize,
    /// Floats per action (1 for discrete).
    pub act_dim: usize,
    /// `[B, obs_dim]` observations `s` (normalised when configured).
    pub observations: Vec<f32>,
    /// `[B, act_dim]` continuous actions; for discrete data the index as a float.
    pub actions: Vec<f32>,
    /// `[B]` discrete action indices; empty for continuous data.
    pub discrete_actions: Vec<i64>,
    /// `[B]` rewards (transformed, n-step discounted sums when `n_step > 1`).
    pub rewards: Vec<f32>,
    /// `[B, obs_dim]` next observations `s'` (after `k` steps); zeros where terminal and unknown.
    pub next_observations: Vec<f32>,
    /// `[B]` 1.0 when `s'` is terminal (do not bootstrap), else 0.0.
    pub terminals: Vec<f32>,
    /// `[B]` 1.0 when the episode was cut by a time limit at `s'`, else 0.0 (bootstrap anyway).
    pub timeouts: Vec<f32>,
    /// `[B]` `gamma^k`, the discount to apply to the bootstrapped value.
    pub discounts: Vec<f32>,
    /// `[B]` dataset row of each sample.
    pub indices: Vec<usize>,
}

/// Observation mean and std (std already includes the epsilon).
#[derive(Debug, Clone, PartialEq)]
pub struct ObsStats {
    /// `[obs_dim]` means.
    pub mean: Vec<f32>,
    /// `[obs_dim]` std + eps.
    pub std: Vec<f32>,
}

impl ObsStats {
    /// Mean and population std of the dataset's observations, plus `eps` on the std.
    pub fn of(ds: &Dataset, eps: f32) -> Self {
        let od = ds.obs_dim();
        let stats = crate::report::dim_stats(ds.observations(), od, None);
        Self {
            mean: stats.iter().map(|s| s.summary.mean as f32).collect(),
            std: stats.iter().map(|s| s.summary.std as f32 + eps).collect(),
        }
    }
}

/// Walker/Vose alias table for O(1) draws from a discrete distribution.
#[derive(Debug, Clone)]
struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Self { prob, alias }
    }

    fn draw(&self, rng: &mut Pcg64Mcg) -> usize {
        let i = rng.random_range(0..self.prob.len());
        if rng.random::<f64>() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

/// Seeded sampler over a dataset. See the module documentation.
#[derive(Debug, Clone)]
pub struct Replay {
    ds: Dataset,
    cfg: ReplayConfig,
    rng: Pcg64Mcg,
    /// Sampleable rows, for uniform sampling.
    rows: Vec<u32>,
    /// Per episode: first row and number of sampleable rows (they are a prefix of the episode).
    episode_rows: Vec<(u32, u32)>,
    /// Episode index of every row.
    episode_of: Vec<u32>,
    /// End (exclusive) row of every episode.
    episode_end: Vec<u32>,
    alias: Option<Alias>,
    obs_stats: Option<ObsStats>,
    reward_scale: f32,
    reward_shift: f32,
}

impl Replay {
    /// Builds a replay with its own RNG seeded by `seed`.
    pub fn new(ds: Dataset, cfg: ReplayConfig, seed: u64) -> Result<Self> {
        if cfg.n_step == 0 {
            return Err(DataError::Replay("n_step must be at least 1".into()));
        }
        if !(cfg.gamma > 0.0 && cfg.gamma <= 1.0) {
            return Err(DataError::Replay(format!(
                "gamma must be in (0, 1], got {}",
                cfg.gamma
            )));
        }
        let n = ds.len();
        if n > u32::MAX as usize {
            return Err(DataError::Replay(format!(
                "{n} transitions exceed the 2^32 rows a replay indexes"
            )));
        }
        let sampleable = |i: usize| ds.next_valid(i) || ds.terminals()[i];
        let mut episode_rows = Vec::with_capacity(ds.num_episodes());
        let mut episode_of = vec![0u32; n];
        let mut episode_end = Vec::with_capacity(ds.num_episodes());
        let mut rows = Vec::with_capacity(n);
        for (k, e) in ds.episodes().enumerate() {
            let valid = e.rows.clone().filter(|&i| sampleable(i)).count();
            episode_rows.push((e.rows.start as u32, valid as u32));
            episode_end.push(e.rows.end as u32);
            episode_of[e.rows.clone()].fill(k as u32);
            rows.extend(e.rows.clone().filter(|&i| sampleable(i)).map(|i| i as u32));
        }
        if rows.is_empty() {
            return Err(DataError::Replay(
                "no sampleable transition (every row lacks s' and is not terminal)".into(),
            ));
        }
        let returns = ds.episode_returns();
        let alias = match cfg.sampling {
            Sampling::Uniform => None,
            Sampling::ReturnWeighted { temperature } => {
                if temperature.is_nan() || temperature <= 0.0 {
                    return Err(DataError::Replay(format!(
                        "return-weighted temperature must be > 0, got {temperature}"
                    )));
                }
                let (lo, hi) = min_max(&returns);
                let range = if hi > lo { hi - lo } else { 1.0 };
                let w: Vec<f64> = returns
                    .iter()
                    .zip(&episode_rows)
                    .map(|(g, &(_, v))| f64::from(v) * ((g - hi) / (temperature * range)).exp())
                    .collect();
                Some(Alias::new(&w))
            }
            Sampling::StratifiedByReturn { bins } => {
                if bins == 0 {
                    return Err(DataError::Replay(
                        "stratified sampling needs at least 1 bin".into(),
                    ));
                }
                let mut order: Vec<usize> = (0..returns.len())
                    .filter(|&k| episode_rows[k].1 > 0)
                    .collect();
                order.sort_by(|&a, &b| returns[a].total_cmp(&returns[b]));
                let bins = bins.min(order.len());
                let mut w = vec![0f64; returns.len()];
                for b in 0..bins {
                    let members = &order[b * order.len() / bins..(b + 1) * order.len() / bins];
                    let rows_in_bin: f64 =
                        members.iter().map(|&k| f64::from(episode_rows[k].1)).sum();
                    for &k in members {
                        w[k] = f64::from(episode_rows[k].1) / rows_in_bin;
                    }
                }
                Some(Alias::new(&w))
            }
        };
        let obs_stats = cfg
            .normalize_observations
            .then(|| ObsStats::of(&ds, cfg.obs_std_eps));
        let (reward_scale, reward_shift) = match cfg.reward_transform {
            RewardTransform::None => (1.0, 0.0),
            RewardTransform::Affine { scale, shift } => (scale, shift),
            RewardTransform::ReturnRange { max_episode_steps } => {
                let (lo, hi) = ds.return_range().unwrap_or((0.0, 0.0));
                if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
                    return Err(DataError::Replay(format!(
                        "return-range reward scaling needs episodes with different returns (all equal {hi})"
                    )));
                }
                ((f64::from(max_episode_steps) / (hi - lo)) as f32, 0.0)
            }
        };
        Ok(Self {
            ds,
            cfg,
            rng: Pcg64Mcg::seed_from_u64(seed),
            rows,
            episode_rows,
            episode_of,
            episode_end,
            alias,
            obs_stats,
            reward_scale,
            reward_shift,
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.ds
    }

    /// Observation statistics in use (when normalising).
    pub fn obs_stats(&self) -> Option<&ObsStats> {
        self.obs_stats.as_ref()
    }

    /// The reward multiplier in effect (1 unless a transform is configured).
    pub fn reward_scale(&self) -> f32 {
        self.reward_scale
    }

    /// The reward offset in effect (0 unless an affine transform is configured): sampled
    /// rewards are `r * reward_scale() + reward_shift()`.
    pub fn reward_shift(&self) -> f32 {
        self.reward_shift
    }

    /// Number of sampleable rows.
    pub fn num_sampleable(&self) -> usize {
        self.rows.len()
    }

    /// Re-seeds the RNG.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(seed);
    }

    /// Samples a new batch of `batch_size` transitions.
    pub fn sample(&mut self, batch_size: usize) -> Batch {
        let mut b = Batch::default();
        self.sample_into(&mut b, batch_size);
        b
    }

    fn draw_row(&mut self) -> usize {
        match &self.alias {
            // Every row sampleable (the common case): skip the indirection and its cache miss.
            None if self.rows.len() == self.ds.len() => self.rng.random_range(0..self.rows.len()),
            None => self.rows[self.rng.random_range(0..self.rows.len())] as usize,
            Some(alias) => {
                let k = alias.draw(&mut self.rng);
                let (start, count) = self.episode_rows[k];
                (start + self.rng.random_range(0..count)) as usize
            }
        }
    }

    /// Fills `batch` with `batch_size` transitions, reusing its buffers (no allocation once sized).
    pub fn sample_into(&mut self, batch: &mut Batch, batch_size: usize) {
        let od = self.ds.obs_dim();
        let ad = self.ds.act_dim();
        let discrete = matches!(self.ds.actions(), Actions::Discrete(_));
        batch.batch_size = batch_size;
        batch.obs_dim = od;
        batch.act_dim = ad;
        batch.observations.resize(batch_size * od, 0.0);
        batch.next_observations.resize(batch_size * od, 0.0);
        batch.actions.resize(batch_size * ad, 0.0);
        batch
            .discrete_actions
            .resize(if discrete { batch_size } else { 0 }, 0);
        for v in [
            &mut batch.rewards,
            &mut batch.terminals,
            &mut batch.timeouts,
            &mut batch.discounts,
        ] {
            v.resize(batch_size, 0.0);
        }
        batch.indices.resize(batch_size, 0);
        // Draw every index first, then copy: the copies' independent cache misses overlap.
        for b in 0..batch_size {
            batch.indices[b] = self.draw_row();
        }
        let indices = std::mem::take(&mut batch.indices);
        for (b, &i) in indices.iter().enumerate() {
            self.fill(batch, b, i);
        }
        batch.indices = indices;
    }

    fn fill(&self, batch: &mut Batch, b: usize, i: usize) {
        let od = self.ds.obs_dim();
        let c = self.ds.columns();
        batch.observations[b * od..(b + 1) * od]
            .copy_from_slice(&c.observations[i * od..(i + 1) * od]);
        match &c.actions {
            Actions::Continuous { dim, values } => batch.actions[b * dim..(b + 1) * dim]
                .copy_from_slice(&values[i * dim..(i + 1) * dim]),
            Actions::Discrete(v) => {
                batch.discrete_actions[b] = v[i];
                batch.actions[b] = v[i] as f32;
            }
        }
        let (scale, shift) = (self.reward_scale, self.reward_shift);
        let mut last = i;
        let mut ret = c.rewards[i] * scale + shift;
        let mut k = 1;
        if self.cfg.n_step > 1 {
            let end = self.episode_end[self.episode_of[i] as usize] as usize;
            let mut g = self.cfg.gamma;
            while k < self.cfg.n_step && !c.terminals[last] && last + 1 < end {
                let nxt = last + 1;
                if !(self.ds.next_valid(nxt) || c.terminals[nxt]) {
                    break;
                }
                ret += g * (c.rewards[nxt] * scale + shift);
                g *= self.cfg.gamma;
                last = nxt;
                k += 1;
            }
        }
        batch.rewards[b] = ret;
        batch.discounts[b] = self.cfg.gamma.powi(k as i32);
        batch.terminals[b] = f32::from(u8::from(c.terminals[last]));
        batch.timeouts[b] = f32::from(u8::from(c.timeouts[last]));
        batch.next_observations[b * od..(b + 1) * od]
            .copy_from_slice(&c.next_observations[last * od..(last + 1) * od]);
        if let Some(st) = &self.obs_stats {
            for row in [
                &mut batch.observations[b * od..(b + 1) * od],
                &mut batch.next_observations[b * od..(b + 1) * od],
            ] {
                for ((x, m), s) in row.iter_mut().zip(&st.mean).zip(&st.std) {
                    *x = (*x - m) / s;
                }
            }
        }
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
