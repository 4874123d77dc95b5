//! [`TransitionBuffer`]: a growing store of transitions, the one place orl assembles rows into
//! a [`Dataset`]. Online training (its replay buffer, which becomes D4RL's "medium-replay") and
//! dataset collection both append to it; it samples uniform batches like [`crate::Replay`],
//! saves and loads itself (orl Parquet, bit for bit) for resumable online runs, and turns into
//! a [`Dataset`] whose last episode may be unfinished.

use std::path::Path;

use rand::{Rng, RngExt};

use crate::dataset::{Actions, Columns, Dataset};
use crate::error::{DataError, Result};
use crate::meta::{ActionSpace, DatasetMeta, ObservationSpace};
use crate::parquet_io::{WriteOptions, write_parquet};
use crate::replay::Batch;

/// One transition to append. `action` holds `act_dim` values, or one value (the index) for
/// discrete actions.
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    /// `s`, `[obs_dim]`.
    pub observation: &'a [f32],
    /// `a`.
    pub action: TransitionAction<'a>,
    /// `r`.
    pub reward: f32,
    /// `s'`, `[obs_dim]`.
    pub next_observation: &'a [f32],
    /// `s'` is terminal.
    pub terminal: bool,
    /// The episode was cut by a time limit at `s'` (and `s'` is not terminal).
    pub timeout: bool,
    /// `log mu(a|s)` of the acting policy, where known.
    pub log_prob: Option<f64>,
}

/// The action of a [`Transition`].
#[derive(Debug, Clone, Copy)]
pub enum TransitionAction<'a> {
    /// Continuous values, `[act_dim]`.
    Continuous(&'a [f32]),
    /// A discrete index.
    Discrete(i64),
}

/// A growing buffer of transitions with episode boundaries (see the module doc).
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionBuffer {
    meta: DatasetMeta,
    obs: Vec<f32>,
    next: Vec<f32>,
    cont: Vec<f32>,
    disc: Vec<i64>,
    rewards: Vec<f32>,
    terminals: Vec<bool>,
    timeouts: Vec<bool>,
    logp: Vec<Option<f64>>,
    /// Closed episodes `(id, length)`.
    episodes: Vec<(i64, usize)>,
    /// Rows of the episode still open.
    open: usize,
}

impl TransitionBuffer {
    /// An empty buffer whose dataset will carry `meta` (its spaces fix the row widths).
    pub fn new(meta: DatasetMeta) -> Self {
        Self {
            meta,
            obs: Vec::new(),
            next: Vec::new(),
            cont: Vec::new(),
            disc: Vec::new(),
            rewards: Vec::new(),
            terminals: Vec::new(),
            timeouts: Vec::new(),
            logp: Vec::new(),
            episodes: Vec::new(),
            open: 0,
        }
    }

    /// An empty buffer for `obs_dim` observations and `actions`, with no other metadata.
    pub fn for_spaces(obs_dim: usize, actions: ActionSpace) -> Self {
        Self::new(DatasetMeta::new(
            ObservationSpace {
                dim: obs_dim,
                low: None,
                high: None,
            },
            actions,
        ))
    }

    /// The metadata the dataset will carry.
    pub fn meta(&self) -> &DatasetMeta {
        &self.meta
    }
    /// The metadata the dataset will carry (mutable: environment id, seed, generator...).
    pub fn meta_mut(&mut self) -> &mut DatasetMeta {
        &mut self.meta
    }

    /// Transitions held.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }
    /// Whether the buffer holds no transition.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }
    /// Closed episodes.
    pub fn num_episodes(&self) -> usize {
        self.episodes.len()
    }
    fn obs_dim(&self) -> usize {
        self.meta.observation_space.dim
    }
    fn act_dim(&self) -> usize {
        self.meta.action_space.width()
    }
    fn discrete(&self) -> bool {
        matches!(self.meta.action_space, ActionSpace::Discrete { .. })
    }

    /// Appends `t` to the open episode; the widths must match the spaces.
    pub fn push(&mut self, t: Transition<'_>) -> Result<()> {
        let od = self.obs_dim();
        let row = self.len();
        let bad = |what: &str, got: usize, want: usize| {
            DataError::invalid(
                "<buffer>",
                format!("transition {row}: {what} has {got} values, expected {want}"),
            )
        };
        if t.observation.len() != od {
            return Err(bad("observation", t.observation.len(), od));
        }
        if t.next_observation.len() != od {
            return Err(bad("next observation", t.next_observation.len(), od));
        }
        match (t.action, self.discrete()) {
            (TransitionAction::Continuous(a), false) => {
                if a.len() != self.act_dim() {
                    return Err(bad("action", a.len(), self.act_dim()));
                }
                self.cont.extend_from_slice(a);
            }
            (TransitionAction::Discrete(i), true) => self.disc.push(i),
            _ => {
                return Err(DataError::invalid(
                    "<buffer>",
                    format!("transition {row}: action kind differs from the buffer's action space"),
                ));
            }
        }
        self.obs.extend_from_slice(t.observation);
        self.next.extend_from_slice(t.next_observation);
        self.rewards.push(t.reward);
        self.terminals.push(t.terminal);
        self.timeouts.push(t.timeout && !t.terminal);
        self.logp.push(t.log_prob);
        self.open += 1;
        Ok(())
    }

    /// Closes the open episode (if it has rows) under the next episode id.
    pub fn end_episode(&mut self) {
        if self.open > 0 {
            self.episodes.push((self.episodes.len() as i64, self.open));
            self.open = 0;
        }
    }

    /// Keeps the first `n` transitions; an episode cut short stays open (unterminated).
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        let (od, ad) = (self.obs_dim(), self.act_dim());
        self.obs.truncate(n * od);
        self.next.truncate(n * od);
        if self.discrete() {
            self.disc.truncate(n);
        } else {
            self.cont.truncate(n * ad);
        }
        self.rewards.truncate(n);
        self.terminals.truncate(n);
        self.timeouts.truncate(n);
        self.logp.truncate(n);
        let mut rows = 0;
        let mut kept = Vec::new();
        for &(id, len) in &self.episodes {
            if rows + len > n {
                break;
            }
            rows += len;
            kept.push((id, len));
        }
        self.episodes = kept;
        self.open = n - rows;
    }

    /// `batch_size` transitions drawn uniformly with replacement by `rng` (one
    /// `random_range(0..len)` per row, in order), discount `gamma` each; buffers reused.
    pub fn sample_uniform_into<R: Rng>(
        &self,
        batch: &mut Batch,
        batch_size: usize,
        gamma: f32,
        rng: &mut R,
    ) {
        let (od, ad, n) = (self.obs_dim(), self.act_dim(), self.len());
        batch.batch_size = batch_size;
        batch.obs_dim = od;
        batch.act_dim = ad;
        for v in [
            &mut batch.observations,
            &mut batch.next_observations,
            &mut batch.actions,
            &mut batch.rewards,
            &mut batch.terminals,
            &mut batch.timeouts,
            &mut batch.discounts,
        ] {
            v.clear();
        }
        batch.discrete_actions.clear();
        batch.indices.clear();
        if n == 0 {
            batch.batch_size = 0;
            return;
        }
        for _ in 0..batch_size {
            let i = rng.random_range(0..n);
            batch.indices.push(i);
            batch
                .observations
                .extend_from_slice(&self.obs[i * od..(i + 1) * od]);
            batch
                .next_observations
                .extend_from_slice(&self.next[i * od..(i + 1) * od]);
            if self.discrete() {
                batch.discrete_actions.push(self.disc[i]);
                batch.actions.push(self.disc[i] as f32);
            } else {
                batch
                    .actions
                    .extend_from_slice(&self.cont[i * ad..(i + 1) * ad]);
            }
            batch.rewards.push(self.rewards[i]);
            batch.terminals.push(f32::from(u8::from(self.terminals[i])));
            batch.timeouts.push(f32::from(u8::from(self.timeouts[i])));
            batch.discounts.push(gamma);
        }
    }

    /// The buffer as a [`Dataset`] (the open episode, if any, is its unfinished last one).
    /// Behaviour log-probabilities are kept when every row has one.
    pub fn to_dataset(&self) -> Result<Dataset> {
        let mut episodes = self.episodes.clone();
        if self.open > 0 {
            episodes.push((episodes.len() as i64, self.open));
        }
        let cols = Columns {
            observations: self.obs.clone(),
            next_observations: self.next.clone(),
            next_valid: None,
            actions: if self.discrete() {
                Actions::Discrete(self.disc.clone())
            } else {
                Actions::Continuous {
                    dim: self.act_dim(),
                    values: self.cont.clone(),
                }
            },
            rewards: self.rewards.clone(),
            terminals: self.terminals.clone(),
            timeouts: self.timeouts.clone(),
            behavior_log_prob: self.logp.iter().copied().collect::<Option<Vec<f64>>>(),
        };
        Dataset::new(self.meta.clone(), cols, &episodes)
    }

    /// Writes the buffer atomically as orl Parquet (values bit for bit; the open episode is the
    /// file's last, unterminated one, and reopens on [`TransitionBuffer::load`]). Where some
    /// rows' log-probabilities are known and others not, they are kept in the metadata.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut ds = self.to_dataset()?;
        if ds.columns().behavior_log_prob.is_none() && self.logp.iter().any(Option::is_some) {
            ds.meta_mut().extra.insert(
                "orl.buffer.log_probs".into(),
                serde_json::to_value(&self.logp).unwrap_or_default(),
            );
        }
        ds.meta_mut().extra.insert(
            "orl.buffer.open_rows".into(),
            serde_json::Value::from(self.open),
        );
        write_parquet(&ds, path, &WriteOptions::default())
    }

    /// Reads a buffer written by [`TransitionBuffer::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let ds = Dataset::open(path)?;
        let bad = |detail: String| DataError::invalid(path, detail);
        let open = ds
            .meta()
            .extra
            .get("orl.buffer.open_rows")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("not a transition buffer (no `orl.buffer.open_rows`)".into()))?
            as usize;
        let mut b = Self::from_dataset(&ds);
        if let Some(lp) = ds.meta().extra.get("orl.buffer.log_probs") {
            let v: Vec<Option<f64>> = serde_json::from_value(lp.clone())
                .map_err(|e| bad(format!("bad `orl.buffer.log_probs`: {e}")))?;
            if v.len() != b.len() {
                return Err(bad("`orl.buffer.log_probs` has the wrong length".into()));
            }
            b.logp = v;
        }
        if open > b.len() {
            return Err(bad(format!("{open} open rows in a buffer of {}", b.len())));
        }
        // The file's last episode is the open one when `open > 0`.
        if open > 0 {
            match b.episodes.pop() {
                Some((_, len)) if len == open => {}
                _ => return Err(bad("its last episode is not the open one".into())),
            }
        }
        b.open = open;
        b.meta.extra.remove("orl.buffer.open_rows");
        b.meta.extra.remove("orl.buffer.log_probs");
        Ok(b)
    }

    /// Every row of `ds`, its episodes closed.
    pub fn from_dataset(ds: &Dataset) -> Self {
        let mut b = Self::new(ds.meta().clone());
        let cols = ds.columns();
        b.obs = cols.observations.clone();
        b.next = cols.next_observations.clone();
        match &cols.actions {
            Actions::Continuous { values, .. } => b.cont = values.clone(),
            Actions::Discrete(v) => b.disc = v.clone(),
        }
        b.rewards = cols.rewards.clone();
        b.terminals = cols.terminals.clone();
        b.timeouts = cols.timeouts.clone();
        b.logp = match &cols.behavior_log_prob {
            Some(v) => v.iter().map(|&x| Some(x)).collect(),
            None => vec![None; cols.rewards.len()],
        };
        b.episodes = ds.episodes().map(|e| (e.id, e.rows.len())).collect();
        b
    }
}
