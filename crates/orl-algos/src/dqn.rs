//! DQN (Mnih et al. 2015) with the double-DQN target (van Hasselt, Guez & Silver 2016).
//!
//! ```text
//! y = r + gamma (1 - d) Q'(s', argmax_a Q(s', a))        (double)   or   max_a Q'(s', a)   (plain)
//! L = huber(Q(s, a), y)
//! Q' <- Q every `target_update_interval` updates
//! ```
//!
//! In orl, DQN trains discrete behaviour policies online (`orl_algos::train_online`) and serves as
//! the unconstrained baseline in the extrapolation tests: trained offline, it over-values
//! actions the data never takes, which is what CQL, IQL and BCQ are built to avoid.

use candle_core::{D, Tensor};
use orl_data::Batch;
use orl_nets::{Adam, AdamConfig, ParamStore, QEnsemble};
use orl_nets::{NetState, OptimState};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::common::{
    Algorithm, BatchTensors, Core, Metrics, Spec, gather_actions, huber_loss, mlp_layer_names,
    plain_policy, record, target_of,
};
use crate::error::Result;

/// DQN settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DqnConfig {
    /// Hidden sizes of the Q-network.
    pub hidden: Vec<usize>,
    /// Adam learning rate.
    pub lr: f64,
    /// Hard target update interval (updates).
    pub target_update_interval: usize,
    /// Double-DQN target (argmax by the online network).
    pub double: bool,
}

impl Default for DqnConfig {
    /// 256x256 (rl-zoo's CartPole network), Adam 1e-3 and a hard target update every 1000
    /// updates, double-DQN target (van Hasselt et al. 2016). rl-zoo's lr 2.3e-3 with a target
    /// update every 10 steps assumes 128 updates per 256 steps; with one update per step, as
    /// `train_online` does, it did not learn CartPole here (mean return 9.5 over the last 10 of
    /// 20 000 steps), while 1e-3 / 1000 reached 167 (64x64, `benches/examples/online_check.rs`).
    fn default() -> Self {
        Self {
            hidden: vec![256, 256],
            lr: 1e-3,
            target_update_interval: 1000,
            double: true,
        }
    }
}

/// DQN.
pub struct Dqn {
    cfg: DqnConfig,
    core: Core,
    q: QEnsemble,
    q_store: ParamStore,
    q_target: QEnsemble,
    q_target_store: ParamStore,
    opt: Adam,
}

impl Dqn {
    /// Builds the Q-network for `spec` (discrete actions), initialised from `seed`.
    pub fn new(
        spec: Spec,
        cfg: DqnConfig,
        seed: u64,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let n = spec.discrete_n("DQN")?;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let (od, h) = (spec.obs_dim, cfg.hidden.clone());
        let mut q_store = ParamStore::new(device.clone());
        let q = QEnsemble::discrete(&mut q_store.builder("", &mut rng), 1, od, n, &h)?;
        let (q_target, q_target_store) =
            target_of(&q_store, |vb| QEnsemble::discrete(vb, 1, od, n, &h))?;
        let opt = Adam::new(&q_store, AdamConfig::with_lr(cfg.lr))?;
        Ok(Self {
            cfg,
            core: Core::new(spec, seed, device),
            q,
            q_store,
            q_target,
            q_target_store,
            opt,
        })
    }
    /// `Q(s, .)`: `[B, n]`.
    pub fn q_all(&self, s: &Tensor) -> Result<Tensor> {
        Ok(self.q.q_all(s)?.get(0)?)
    }
}

/// Huber TD loss: `(loss, mean Q, mean |TD|)`.
fn td_loss(t: &Dqn, b: &BatchTensors) -> Result<(Tensor, Tensor, Tensor)> {
    let y = {
        let q2t = t.q_target.q_all(&b.s2)?.get(0)?;
        let v2 = if t.cfg.double {
            gather_actions(&q2t, &t.q_all(&b.s2)?.argmax(D::Minus1)?)?
        } else {
            q2t.max(D::Minus1)?
        };
        b.td_target(&v2)?.detach()
    };
    let q = gather_actions(&t.q_all(&b.s)?, &b.a)?;
    Ok((
        huber_loss(&q, &y)?,
        q.mean_all()?,
        (&q - &y)?.abs()?.mean_all()?,
    ))
}

impl Algorithm for Dqn {
    fn name(&self) -> &'static str {
        "dqn"
    }
    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).unwrap_or_default()
    }
    fn update(&mut self, batch: &Batch) -> Result<Metrics> {
        let b = BatchTensors::new(batch, &self.core.spec, &self.core.device)?;
        let mut m = Metrics::new();
        let (loss, q, td) = td_loss(self, &b)?;
        record(&mut m, self.core.steps, "critic_loss", &loss)?;
        record(&mut m, self.core.steps, "q_mean", &q)?;
        record(&mut m, self.core.steps, "td_error", &td)?;
        self.opt.backward_step(&loss)?;
        self.core.steps += 1;
        if self
            .core
            .steps
            .is_multiple_of(self.cfg.target_update_interval.max(1))
        {
            self.q_target_store.copy_from(&self.q_store)?;
        }
        Ok(m)
    }
    fn act(&mut self, s: &Tensor, _deterministic: bool) -> Result<Tensor> {
        Ok(self.q_all(s)?.argmax(D::Minus1)?)
    }
    fn q_value(&self, s: &Tensor, a: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(gather_actions(&self.q_all(s)?, a)?))
    }
    fn policy_model(&self) -> Result<Option<orl_nets::PolicyModel>> {
        let names = mlp_layer_names("", self.cfg.hidden.len() + 1);
        Ok(Some(plain_policy(
            &self.q_store.named_tensors(""),
            &names,
            &self.core.spec,
        )?))
    }
    fn nets(&self) -> Vec<(&'static str, &dyn NetState)> {
        vec![
            ("critic", &self.q_store),
            ("critic_target", &self.q_target_store),
        ]
    }
    fn nets_mut(&mut self) -> Vec<(&'static str, &mut dyn NetState)> {
        vec![
            ("critic", &mut self.q_store),
            ("critic_target", &mut self.q_target_store),
        ]
    }
    fn optims(&self) -> Vec<(&'static str, &dyn OptimState)> {
        vec![("critic", &self.opt)]
    }
    fn optims_mut(&mut self) -> Vec<(&'static str, &mut dyn OptimState)> {
        vec![("critic", &mut self.opt)]
    }
    fn core(&self) -> &Core {
        &self.core
    }
    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}
