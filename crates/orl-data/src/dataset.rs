//! The in-memory, columnar dataset.
//!
//! A [`Dataset`] holds `N` transitions `(s, a, r, s', terminal, timeout)` grouped in
//! episodes. Every column is one contiguous buffer:
//!
//! | buffer | length | meaning |
//! |---|---|---|
//! | `observations` | `N * obs_dim` f32 | row-major `[N, obs_dim]` |
//! | `next_observations` | `N * obs_dim` f32 | `[N, obs_dim]`; zeros where `next_valid[i]` is false |
//! | `next_valid` | `N` bool, or absent (= all true) | false where the source stored no next observation |
//! | `actions` | `N * act_dim` f32, or `N` i64 | continuous `[N, act_dim]` or discrete `[N]` |
//! | `rewards` | `N` f32 | |
//! | `terminals`, `timeouts` | `N` bool | set only on the last row of an episode |
//! | `behavior_log_prob` | `N` f64, optional | log-probability of `a` under the behaviour policy |
//!
//! Episodes are contiguous runs of rows, `step` counting `0..len` inside each, so the
//! per-row `episode_id` and `step` columns of the Parquet file are not stored: an
//! episode is its id plus its start offset. Memory is therefore the raw array bytes
//! plus 16 bytes per episode.
//!
//! An episode ends in one of three ways, told by its last row: `terminal` (the MDP
//! ended, do not bootstrap), `timeout` (a time limit cut it; bootstrap from `s'`), or
//! neither (the log stops mid-episode, like D4RL's trailing episode; bootstrap from
//! `s'` when it is known).

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::meta::{ActionSpace, DatasetMeta};

/// The action column: continuous rows of `dim` floats or discrete indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Actions {
    /// Row-major `[N, dim]`.
    Continuous {
        /// Floats per action.
        dim: usize,
        /// `N * dim` values.
        values: Vec<f32>,
    },
    /// `[N]` action indices in `0..n`.
    Discrete(Vec<i64>),
}

impl Actions {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Continuous { dim, values } => values.len().checked_div(*dim).unwrap_or(0),
            Self::Discrete(v) => v.len(),
        }
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Continuous { values, .. } => values.capacity() * 4,
            Self::Discrete(v) => v.capacity() * 8,
        }
    }
}

/// All columns of a dataset as flat buffers, before validation. See the module doc for layouts.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// `[N, obs_dim]`.
    pub observations: Vec<f32>,
    /// `[N, obs_dim]`, zeros where unknown.
    pub next_observations: Vec<f32>,
    /// `[N]`, `None` when every next observation is known.
    pub next_valid: Option<Vec<bool>>,
    /// `[N, act_dim]` or `[N]`.
    pub actions: Actions,
    /// `[N]`.
    pub rewards: Vec<f32>,
    /// `[N]`.
    pub terminals: Vec<bool>,
    /// `[N]`.
    pub timeouts: Vec<bool>,
    /// `[N]`, optional.
    pub behavior_log_prob: Option<Vec<f64>>,
}

/// One episode: its id, its rows and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Episode id as stored in the `episode_id` column.
    pub id: i64,
    /// Rows of the dataset that belong to it.
    pub rows: Range<usize>,
    /// Last row is terminal.
    pub terminal: bool,
    /// Last row is a timeout.
    pub timeout: bool,
}

impl Episode {
    /// Number of transitions.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True for an episode without rows (never produced by a valid dataset).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Neither terminal nor timeout: the log stopped mid-episode.
    pub fn is_unterminated(&self) -> bool {
        !self.terminal && !self.timeout
    }
}

/// A validated, columnar offline-RL dataset. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    meta: DatasetMeta,
    cols: Columns,
    /// Id of each episode.
    episode_ids: Vec<i64>,
    /// `episodes + 1` offsets; episode `k` is rows `starts[k]..starts[k+1]`.
    starts: Vec<usize>,
}

const MEMORY: &str = "<memory>";

impl Dataset {
    /// Builds a dataset from columns and `(episode_id, length)` pairs in row order, checking
    /// every invariant of the format (see `docs/dataset-format.md`).
    ///
    /// Non-finite values are *not* rejected here; call [`Dataset::check_finite`] for that.
    pub fn new(meta: DatasetMeta, cols: Columns, episodes: &[(i64, usize)]) -> Result<Self> {
        Self::new_at(Path::new(MEMORY), meta, cols, episodes)
    }

    /// Like [`Dataset::new`], naming `path` in errors.
    pub fn new_at(
        path: &Path,
        meta: DatasetMeta,
        cols: Columns,
        episodes: &[(i64, usize)],
    ) -> Result<Self> {
        let mut starts = Vec::with_capacity(episodes.len() + 1);
        let mut ids = Vec::with_capacity(episodes.len());
        let mut seen = HashSet::with_capacity(episodes.len());
        let mut offset = 0usize;
        starts.push(0);
        for &(id, len) in episodes {
            if len == 0 {
                return Err(DataError::invalid(
                    path,
                    format!("episode {id} has no transitions"),
                ));
            }
            if !seen.insert(id) {
                return Err(DataError::invalid(
                    path,
                    format!(
                        "column `episode_id`: episode {id} appears in two separate runs of rows"
                    ),
                ));
            }
            offset += len;
            starts.push(offset);
            ids.push(id);
        }
        let mut cols = cols;
        // Canonical form: `None` when every next observation is known.
        if cols
            .next_valid
            .as_ref()
            .is_some_and(|v| v.iter().all(|&x| x))
        {
            cols.next_valid = None;
        }
        let ds = Self {
            meta,
            cols,
            episode_ids: ids,
            starts,
        };
        ds.validate(path)?;
        Ok(ds)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let n = *self.starts.last().unwrap_or(&0);
        let od = self.meta.observation_space.dim;
        let c = &self.cols;
        if n == 0 {
            return Err(DataError::Empty {
                path: path.into(),
                detail: "0 transitions".into(),
            });
        }
        if od == 0 {
            return Err(DataError::invalid(
                path,
                "observation space has 0 dimensions",
            ));
        }
        let check = |key: &str, found: usize, expected: usize| -> Result<()> {
            if found != expected {
                return Err(DataError::shape(
                    path,
                    key,
                    format!("{expected} values"),
                    format!("{found} values"),
                ));
            }
            Ok(())
        };
        check("observation", c.observations.len(), n * od)?;
        check("next_observation", c.next_observations.len(), n * od)?;
        check("reward", c.rewards.len(), n)?;
        check("terminal", c.terminals.len(), n)?;
        check("timeout", c.timeouts.len(), n)?;
        if let Some(v) = &c.next_valid {
            check("next_observation (validity)", v.len(), n)?;
        }
        if let Some(v) = &c.behavior_log_prob {
            check("behavior_log_prob", v.len(), n)?;
        }
        match (&self.meta.action_space, &c.actions) {
            (ActionSpace::Continuous { dim, .. }, Actions::Continuous { dim: d2, values }) => {
                if dim != d2 || *dim == 0 {
                    return Err(DataError::shape(
                        path,
                        "action",
                        format!("{dim} values per row (action space)"),
                        format!("{d2}"),
                    ));
                }
                check("action", values.len(), n * dim)?;
            }
            (ActionSpace::Discrete { n: na }, Actions::Discrete(v)) => {
                check("action", v.len(), n)?;
                if let Some((row, a)) = v
                    .iter()
                    .enumerate()
                    .find(|(_, a)| **a < 0 || **a as usize >= *na)
                {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "column `action`: row {row} holds {a}, outside the discrete space 0..{na}"
                        ),
                    ));
                }
            }
            (space, _) => {
                return Err(DataError::dtype(
                    path,
                    "action",
                    if space.is_discrete() {
                        "Int64 (discrete space)"
                    } else {
                        "FixedSizeList<Float32> (continuous space)"
                    },
                    if space.is_discrete() {
                        "float rows"
                    } else {
                        "integer indices"
                    },
                ));
            }
        }
        // Flags and missing next observations may only sit on the last row of an episode.
        for k in 0..self.episode_ids.len() {
            let (s, e) = (self.starts[k], self.starts[k + 1]);
            let id = self.episode_ids[k];
            for row in s..e - 1 {
                if c.terminals[row] || c.timeouts[row] {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "column `{}`: row {row} (episode {id}, step {}) ends the episode but is not its last row",
                            if c.terminals[row] {
                                "terminal"
                            } else {
                                "timeout"
                            },
                            row - s
                        ),
                    ));
                }
                if c.next_valid.as_ref().is_some_and(|v| !v[row]) {
                    return Err(DataError::invalid(
                        path,
                        format!(
                            "column `next_observation`: null at row {row} (episode {id}), which is not the last row of its episode"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Returns an error naming the first column holding NaN or infinity.
    pub fn check_finite(&self, path: &Path) -> Result<()> {
        fn first_bad<T: Copy>(
            v: &[T],
            fin: impl Fn(T) -> bool,
            width: usize,
        ) -> Option<(usize, usize)> {
            let mut count = 0;
            let mut first = None;
            for (i, x) in v.iter().enumerate() {
                if !fin(*x) {
                    count += 1;
                    first.get_or_insert(i / width.max(1));
                }
            }
            first.map(|f| (count, f))
        }
        let od = self.obs_dim();
        let c = &self.cols;
        let mut checks: Vec<(&str, Option<(usize, usize)>)> = vec![
            (
                "observation",
                first_bad(&c.observations, f32::is_finite, od),
            ),
            (
                "next_observation",
                first_bad(&c.next_observations, f32::is_finite, od),
            ),
            ("reward", first_bad(&c.rewards, f32::is_finite, 1)),
        ];
        if let Actions::Continuous { dim, values } = &c.actions {
            checks.push(("action", first_bad(values, f32::is_finite, *dim)));
        }
        if let Some(lp) = &c.behavior_log_prob {
            // -inf is a legal log-probability of an impossible action only in theory; a logged action had p > 0.
            checks.push(("behavior_log_prob", first_bad(lp, f64::is_finite, 1)));
        }
        for (key, bad) in checks {
            if let Some((count, first_row)) = bad {
                return Err(DataError::NonFinite {
                    path: path.into(),
                    key: key.into(),
                    count,
                    first_row,
                });
            }
        }
        Ok(())
    }

    /// Metadata.
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }

    /// Mutable metadata (spaces must stay consistent with the columns; they are not re-checked).
    pub fn meta_mut(&mut self) -> &mut DatasetMeta {
        &mut self.meta
    }

    /// Number of transitions `N`.
    pub fn len(&self) -> usize {
        self.cols.rewards.len()
    }

    /// Always false for a validated dataset; present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Observation dimension.
    pub fn obs_dim(&self) -> usize {
        self.meta.observation_space.dim
    }

    /// Floats per action row (1 for discrete).
    pub fn act_dim(&self) -> usize {
        self.meta.action_space.width()
    }

    /// Number of episodes.
    pub fn num_episodes(&self) -> usize {
        self.episode_ids.len()
    }

    /// All columns.
    pub fn columns(&self) -> &Columns {
        &self.cols
    }

    /// Consumes the dataset into its metadata, columns and `(episode_id, len)` pairs.
    pub fn into_parts(self) -> (DatasetMeta, Columns, Vec<(i64, usize)>) {
        let eps = self.episode_lengths_with_ids();
        (self.meta, self.cols, eps)
    }

    /// Per-row episode ids and steps within the episode (the file format's `episode_id` and
    /// `step` columns), expanded from the episode table.
    pub fn row_index(&self) -> (Vec<i64>, Vec<i64>) {
        let mut ids = Vec::with_capacity(self.len());
        let mut steps = Vec::with_capacity(self.len());
        for e in self.episodes() {
            ids.extend(std::iter::repeat_n(e.id, e.len()));
            steps.extend(0..e.len() as i64);
        }
        (ids, steps)
    }

    /// `(episode_id, len)` pairs in row order.
    pub fn episode_lengths_with_ids(&self) -> Vec<(i64, usize)> {
        self.episode_ids
            .iter()
            .zip(self.starts.windows(2))
            .map(|(&id, w)| (id, w[1] - w[0]))
            .collect()
    }

    /// Observations `[N, obs_dim]`, row-major.
    pub fn observations(&self) -> &[f32] {
        &self.cols.observations
    }

    /// Next observations `[N, obs_dim]`, row-major (zeros where [`Dataset::next_valid`] is false).
    pub fn next_observations(&self) -> &[f32] {
        &self.cols.next_observations
    }

    /// Whether row `i` has a known next observation.
    pub fn next_valid(&self, i: usize) -> bool {
        self.cols.next_valid.as_ref().is_none_or(|v| v[i])
    }

    /// Observation of row `i`.
    pub fn observation(&self, i: usize) -> &[f32] {
        let d = self.obs_dim();
        &self.cols.observations[i * d..(i + 1) * d]
    }

    /// Actions.
    pub fn actions(&self) -> &Actions {
        &self.cols.actions
    }

    /// Rewards `[N]`.
    pub fn rewards(&self) -> &[f32] {
        &self.cols.rewards
    }

    /// Terminal flags `[N]`.
    pub fn terminals(&self) -> &[bool] {
        &self.cols.terminals
    }

    /// Timeout flags `[N]`.
    pub fn timeouts(&self) -> &[bool] {
        &self.cols.timeouts
    }

    /// Behaviour log-probabilities `[N]`, when logged.
    pub fn behavior_log_prob(&self) -> Option<&[f64]> {
        self.cols.behavior_log_prob.as_deref()
    }

    /// Episodes in row order.
    pub fn episodes(&self) -> impl ExactSizeIterator<Item = Episode> + '_ {
        (0..self.episode_ids.len()).map(move |k| {
            let (s, e) = (self.starts[k], self.starts[k + 1]);
            Episode {
                id: self.episode_ids[k],
                rows: s..e,
                terminal: self.cols.terminals[e - 1],
                timeout: self.cols.timeouts[e - 1],
            }
        })
    }

    /// `true` when every reward is the same and no row is terminal: every action then has the
    /// same value under every policy, so no method can learn more than behaviour cloning from
    /// the data (e.g. an Acrobot buffer holding only episodes that hit the time limit).
    pub fn uninformative_rewards(&self) -> bool {
        !self.is_empty() && self.first_reward_signal_row().is_none()
    }

    /// The first row that gives the data a reward signal: a terminal row, or a reward that
    /// differs from row 0's. The first `n` rows are [`uninformative_rewards`](Self::uninformative_rewards)
    /// exactly when `n` is at most this row (or it is `None`), so one pass answers every prefix
    /// (`train-behaviours` asks it of each candidate snapshot of a training buffer).
    pub fn first_reward_signal_row(&self) -> Option<usize> {
        let r = self.rewards();
        let t = self.terminals();
        let r0 = *r.first()?;
        (0..r.len()).find(|&i| t[i] || r[i] != r0)
    }

    /// Undiscounted return of every episode, summed in f64 in row order.
    pub fn episode_returns(&self) -> Vec<f64> {
        self.episodes()
            .map(|e| {
                self.cols.rewards[e.rows]
                    .iter()
                    .map(|&r| f64::from(r))
                    .sum()
            })
            .collect()
    }

    /// `(min, max)` undiscounted return over the episodes that end in a terminal or a timeout
    /// (all episodes if none does), as IQL's return-range reward scaling uses; `None` for an
    /// empty dataset.
    pub fn return_range(&self) -> Option<(f64, f64)> {
        let returns = self.episode_returns();
        let complete: Vec<f64> = self
            .episodes()
            .zip(&returns)
            .filter(|(e, _)| !e.is_unterminated())
            .map(|(_, g)| *g)
            .collect();
        let v = if complete.is_empty() {
            &returns
        } else {
            &complete
        };
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (!v.is_empty()).then_some((lo, hi))
    }

    /// Bytes held by the buffers (capacity, not length), for the memory budget of `Dataset::open`.
    pub fn heap_bytes(&self) -> usize {
        let c = &self.cols;
        c.observations.capacity() * 4
            + c.next_observations.capacity() * 4
            + c.next_valid.as_ref().map_or(0, Vec::capacity)
            + c.actions.bytes()
            + c.rewards.capacity() * 4
            + c.terminals.capacity()
            + c.timeouts.capacity()
            + c.behavior_log_prob.as_ref().map_or(0, |v| v.capacity() * 8)
            + self.episode_ids.capacity() * 8
            + self.starts.capacity() * 8
    }

    /// Concatenates datasets with identical spaces (e.g. the files of a directory, or
    /// medium + expert). Episode ids must stay unique; pass `renumber` to make them `0..E`.
    pub fn concat(parts: Vec<Dataset>, renumber: bool) -> Result<Dataset> {
        let mut it = parts.into_iter();
        let Some(first) = it.next() else {
            return Err(DataError::Empty {
                path: PathBuf::from(MEMORY),
                detail: "nothing to concatenate".into(),
            });
        };
        let (meta, mut cols, mut eps) = first.into_parts();
        for (k, d) in it.enumerate() {
            if d.meta.observation_space.dim != meta.observation_space.dim
                || d.meta.action_space.is_discrete() != meta.action_space.is_discrete()
                || d.meta.action_space.width() != meta.action_space.width()
            {
                return Err(DataError::invalid(
                    MEMORY,
                    format!(
                        "part {} has other observation/action spaces than part 0",
                        k + 1
                    ),
                ));
            }
            let n_before = cols.rewards.len();
            let (_, c2, e2) = d.into_parts();
            cols.observations.extend_from_slice(&c2.observations);
            cols.next_observations
                .extend_from_slice(&c2.next_observations);
            cols.next_valid = match (cols.next_valid.take(), c2.next_valid) {
                (None, None) => None,
                (a, b) => {
                    let mut a = a.unwrap_or_else(|| vec![true; n_before]);
                    a.extend(b.unwrap_or_else(|| vec![true; c2.rewards.len()]));
                    Some(a)
                }
            };
            match (&mut cols.actions, c2.actions) {
                (Actions::Continuous { values, .. }, Actions::Continuous { values: v2, .. }) => {
                    values.extend(v2)
                }
                (Actions::Discrete(v), Actions::Discrete(v2)) => v.extend(v2),
                _ => unreachable!("spaces compared above"),
            }
            cols.rewards.extend(c2.rewards);
            cols.terminals.extend(c2.terminals);
            cols.timeouts.extend(c2.timeouts);
            cols.behavior_log_prob = match (cols.behavior_log_prob.take(), c2.behavior_log_prob) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                _ => None,
            };
            eps.extend(e2);
        }
        if renumber {
            for (k, e) in eps.iter_mut().enumerate() {
                e.0 = k as i64;
            }
        }
        Dataset::new(meta, cols, &eps)
    }
}
