//! Off-policy evaluation: judge a policy on logged data, before anyone deploys it.
//!
//! Estimators ([`Estimator`]): importance sampling over whole episodes (IS), self-normalised
//! (WIS), per-decision (PDIS), weighted per-decision (WPDIS), doubly robust (DR, Jiang & Li
//! 2016) and weighted doubly robust (WDR, Thomas & Brunskill 2016) with an FQE model, regression
//! importance sampling (RIS, Hanna et al. 2019: the behaviour policy fitted by maximum
//! likelihood on the same data, used in weighted per-decision form), fitted Q evaluation (FQE, Le et al. 2019) and model-based
//! rollouts in a learned probabilistic ensemble. Every estimate comes with a seeded bootstrap
//! interval, and the importance-sampling family with the effective sample size and largest
//! normalised weight; an estimate that does not exist (zero or overflowing weights, a
//! deterministic policy) is `None` with a warning, never a silent NaN.
//!
//! Works with any [`orl_nets::Policy`]; it does not depend on `orl-algos`. Behaviour
//! probabilities come from the dataset's `behavior_log_prob` column when present, otherwise from
//! the estimated behaviour policy; [`OpeReport::behavior_source`] says which.
//!
//! Layout: [`estimators`] (pure math on prepared trajectories), [`bootstrap`], [`logged`] (the
//! data and the policy queries), [`behavior`], [`fqe`], [`model`], [`evaluate()`](evaluate())
//! (all of them on one dataset), [`metrics`] (the DOPE ranking metrics).
//!
//! The three fitted networks (the behaviour model, FQE's Q-function, the dynamics ensemble)
//! train on `orl-nets`' engine ([`orl_nets::engine`]): each writes its loss and the loss's
//! gradient with respect to the network output once, and a [`Probe`] of them is checked
//! against candle's autograd (`tests/parity.rs`). The evaluated policy stays behind the
//! [`orl_nets::Policy`] trait, whatever computes it.
//!
//! ```
//! use orl_ope::{IsKind, Trajectory, estimate};
//! // Two one-step episodes; the target policy doubles the probability of the first action.
//! let a = Trajectory { rewards: vec![1.0], log_ratios: vec![2f64.ln()], ..Default::default() };
//! let b = Trajectory { rewards: vec![0.0], log_ratios: vec![0.0], ..Default::default() };
//! let v = estimate(IsKind::Is, &[&a, &b], 0.99, None).unwrap();
//! assert!((v - 1.0).abs() < 1e-12); // (2 * 1 + 1 * 0) / 2
//! ```

pub mod behavior;
pub mod bootstrap;
mod error;
pub mod estimators;
mod evaluate;
mod fit;
pub mod fqe;
pub mod logged;
pub mod metrics;
pub mod model;

pub use behavior::{BehaviorConfig, BehaviorModel};
pub use bootstrap::{Interval, bootstrap, bootstrap_mean};
pub use error::{OpeError, Result};
pub use estimators::{IsKind, Trajectory, Undefined, estimate, weight_stats};
pub use evaluate::{Estimate, Estimator, OpeConfig, OpeReport, evaluate};
pub use fit::Probe;
pub use fqe::{Fqe, FqeConfig, FqeFit};
pub use logged::{ActionKind, Logged};
pub use metrics::{RankMetrics, rank_metrics, spearman};
pub use model::{DynamicsModel, ModelConfig, ProbabilisticEnsemble, rollout_values};
