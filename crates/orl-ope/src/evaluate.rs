//! All estimators on one dataset and one policy: [`evaluate`] prepares the data, fits what the
//! chosen estimators need (FQE, the behaviour model, the dynamics ensemble), and returns one
//! [`Estimate`] per estimator with its bootstrap interval and weight diagnostics.

use std::str::FromStr;

use orl_data::Dataset;
use orl_nets::Policy;

use crate::behavior::{BehaviorConfig, BehaviorModel};
use crate::bootstrap::{Interval, bootstrap, bootstrap_mean};
use crate::error::{OpeError, Result};
use crate::estimators::{IsKind, Trajectory, Undefined, estimate, weight_stats};
use crate::fqe::{Fqe, FqeConfig, FqeFit};
use crate::logged::{Logged, check_policy, policy_log_probs};
use crate::model::{ModelConfig, ProbabilisticEnsemble, rollout_values};

/// An off-policy estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Estimator {
    /// Whole-episode importance sampling.
    Is,
    /// Weighted (self-normalised) importance sampling.
    Wis,
    /// Per-decision importance sampling.
    Pdis,
    /// Weighted per-decision importance sampling.
    Wpdis,
    /// Doubly robust with the FQE model.
    Dr,
    /// Weighted doubly robust with the FQE model.
    Wdr,
    /// Regression importance sampling (Hanna et al. 2019) in its weighted per-decision form:
    /// WPDIS with the behaviour policy estimated on the same data. The unweighted per-decision
    /// form was tried and measured unusable on 200-step episodes (products of 200 estimated
    /// ratios; Pendulum test: -1189 for a true -127), see `docs/ope.md`.
    Ris,
    /// Fitted Q evaluation.
    Fqe,
    /// Model-based rollouts in a learned probabilistic ensemble.
    Model,
}

impl Estimator {
    /// Every estimator, in report order.
    pub const ALL: [Estimator; 9] = [
        Self::Is,
        Self::Wis,
        Self::Pdis,
        Self::Wpdis,
        Self::Dr,
        Self::Wdr,
        Self::Ris,
        Self::Fqe,
        Self::Model,
    ];
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Is => "is",
            Self::Wis => "wis",
            Self::Pdis => "pdis",
            Self::Wpdis => "wpdis",
            Self::Dr => "dr",
            Self::Wdr => "wdr",
            Self::Ris => "ris",
            Self::Fqe => "fqe",
            Self::Model => "model",
        }
    }
    /// Parses `all` or a comma-separated list (`is,wis,fqe`).
    pub fn parse_list(s: &str) -> Result<Vec<Self>> {
        if s.trim() == "all" {
            return Ok(Self::ALL.to_vec());
        }
        s.split(',').map(|x| x.trim().parse()).collect()
    }
    fn is_kind(self) -> Option<IsKind> {
        Some(match self {
            Self::Is => IsKind::Is,
            Self::Wis => IsKind::Wis,
            Self::Pdis => IsKind::Pdis,
            Self::Wpdis | Self::Ris => IsKind::Wpdis,
            Self::Dr => IsKind::Dr,
            Self::Wdr => IsKind::Wdr,
            Self::Fqe | Self::Model => return None,
        })
    }
}

impl FromStr for Estimator {
    type Err = OpeError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.name() == s)
            .ok_or_else(|| {
                OpeError::Config(format!(
                    "unknown estimator `{s}`; expected `all` or a list of {}",
                    Self::ALL.map(Self::name).join(", ")
                ))
            })
    }
}

/// Settings of an evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OpeConfig {
    /// Discount factor.
    pub gamma: f64,
    /// Which estimators.
    pub estimators: Vec<Estimator>,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Confidence level of the intervals.
    pub level: f64,
    /// Clip cumulative importance weights at this value, if set.
    pub clip: Option<f64>,
    /// Seed of every fit and of the bootstrap.
    pub seed: u64,
    /// FQE settings (FQE, DR, WDR).
    pub fqe: FqeConfig,
    /// Behaviour-model settings (RIS, and the IS family when the data has no logged
    /// `behavior_log_prob`).
    pub behavior: BehaviorConfig,
    /// Dynamics-model settings.
    pub model: ModelConfig,
}

impl Default for OpeConfig {
    /// gamma 0.99 (the discount of the D4RL algorithms' papers), every estimator, 200 bootstrap
    /// resamples (the minimum; Thomas et al. 2015 use 2 000 for high-confidence bounds),
    /// 95% intervals, no clipping, seed 0.
    fn default() -> Self {
        Self {
            gamma: 0.99,
            estimators: Estimator::ALL.to_vec(),
            resamples: 200,
            level: 0.95,
            clip: None,
            seed: 0,
            fqe: FqeConfig::default(),
            behavior: BehaviorConfig::default(),
            model: ModelConfig::default(),
        }
    }
}

/// One estimator's result.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Estimator name.
    pub estimator: &'static str,
    /// The estimate, `None` when it is undefined (see `warnings`).
    pub value: Option<f64>,
    /// Bootstrap interval.
    pub interval: Option<Interval>,
    /// Units the estimate averages over (episodes or initial states).
    pub n: usize,
    /// Effective sample size of the episode weights (importance-sampling family).
    pub ess: Option<f64>,
    /// Largest normalised episode weight.
    pub max_weight: Option<f64>,
    /// Where `mu(a|s)` came from, for the estimators that use it.
    pub behavior: Option<String>,
    /// What limits this estimate (undefined value, tiny ESS, clipping, what the interval covers).
    pub warnings: Vec<String>,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpeReport {
    /// What every estimate estimates: the expected discounted return of the first `horizon`
    /// steps from the data's initial states.
    pub target: String,
    /// The time limit `T` the value is cut at.
    pub horizon: usize,
    /// How the FQE fit went (FQE, DR, WDR), where one was made.
    pub fqe_fit: Option<FqeFit>,
    /// Kept episodes.
    pub episodes: usize,
    /// Episodes left out (cut by the end of the data).
    pub dropped_episodes: usize,
    /// Transitions.
    pub transitions: usize,
    /// `logged` or `estimated` (the IS family's `mu`).
    pub behavior_source: String,
    /// One entry per requested estimator.
    pub estimates: Vec<Estimate>,
    /// The settings used.
    pub config: OpeConfig,
}

const LOGGED: &str = "logged (column `behavior_log_prob`)";
const ESTIMATED: &str = "estimated by maximum likelihood (regression importance sampling)";

/// Runs the estimators of `cfg` for `policy` on `ds`.
pub fn evaluate(ds: &Dataset, policy: &mut dyn Policy, cfg: &OpeConfig) -> Result<OpeReport> {
    if !(0.0..=1.0).contains(&cfg.gamma) {
        return Err(OpeError::Config(format!(
            "gamma {} is not in [0, 1]",
            cfg.gamma
        )));
    }
    if !(cfg.level > 0.0 && cfg.level < 1.0) {
        return Err(OpeError::Config(format!(
            "level {} is not in (0, 1)",
            cfg.level
        )));
    }
    if let Some(c) = cfg.clip
        && (c.is_nan() || c <= 0.0)
    {
        return Err(OpeError::Config(format!("clip {c} must be positive")));
    }
    if cfg.estimators.is_empty() {
        return Err(OpeError::Config("no estimator chosen".into()));
    }
    let data = Logged::from_dataset(ds)?;
    check_policy(policy, &data)?;
    let wants = |e: Estimator| cfg.estimators.contains(&e);
    let needs_ratio = cfg.estimators.iter().any(|e| e.is_kind().is_some());
    let needs_fqe = wants(Estimator::Fqe) || wants(Estimator::Dr) || wants(Estimator::Wdr);
    let log_pi = if needs_ratio {
        policy_log_probs(policy, &data)?
    } else {
        None
    };
    let logged_mu = data.behavior_log_prob.clone();
    let estimated_mu =
        if needs_ratio && log_pi.is_some() && (logged_mu.is_none() || wants(Estimator::Ris)) {
            Some(BehaviorModel::fit(&data, &cfg.behavior, cfg.seed)?.log_probs(&data)?)
        } else {
            None
        };
    let (behavior_source, mu) = match (&logged_mu, &estimated_mu) {
        (Some(m), _) => (LOGGED, Some(m)),
        (None, Some(m)) => (ESTIMATED, Some(m)),
        (None, None) => (ESTIMATED, None),
    };
    let fqe = if needs_fqe {
        Some(Fqe::fit(&data, policy, cfg.gamma, &cfg.fqe, cfg.seed)?)
    } else {
        None
    };
    let fqe_fit = fqe.as_ref().and_then(|f| f.fit.clone());
    let (q, v) = match &fqe {
        Some(f) => f.q_and_v(&data)?,
        None => (Vec::new(), Vec::new()),
    };
    let trajectories = |mu: &[f64], lp: &[f64]| -> Vec<Trajectory> {
        data.episodes
            .iter()
            .map(|r| Trajectory {
                rewards: data.rewards[r.clone()].to_vec(),
                log_ratios: r.clone().map(|i| lp[i] - mu[i]).collect(),
                q: if q.is_empty() {
                    Vec::new()
                } else {
                    q[r.clone()].to_vec()
                },
                v: if v.is_empty() {
                    Vec::new()
                } else {
                    v[r.clone()].to_vec()
                },
            })
            .collect()
    };
    let main_traj = match (&log_pi, mu) {
        (Some(lp), Some(mu)) => Some(trajectories(mu, lp)),
        _ => None,
    };
    let ris_traj = match (&log_pi, &estimated_mu) {
        (Some(lp), Some(mu)) => Some(trajectories(mu, lp)),
        _ => None,
    };
    let mut estimates = Vec::new();
    for (k, &e) in cfg.estimators.iter().enumerate() {
        let seed = cfg.seed.wrapping_add(1000 + k as u64);
        let est = match e {
            Estimator::Fqe => {
                let f = fqe
                    .as_ref()
                    .ok_or_else(|| OpeError::Config("FQE not fitted".into()))?;
                let vals = f.initial_values(&data)?;
                let mut est = unit_estimate(
                    e,
                    &vals,
                    cfg,
                    seed,
                    "the interval resamples initial states; it does not include FQE's fitting error",
                );
                fit_note(&mut est, fqe_fit.as_ref());
                est
            }
            Estimator::Model => {
                let mut m = ProbabilisticEnsemble::fit(&data, &cfg.model, cfg.seed)?;
                let horizon = cfg.model.horizon.unwrap_or(data.horizon);
                let vals = rollout_values(
                    &mut m,
                    policy,
                    &data.initial_states(),
                    data.obs_dim,
                    horizon,
                    cfg.gamma,
                    cfg.model.rollouts,
                    seed,
                )?;
                unit_estimate(
                    e,
                    &vals,
                    cfg,
                    seed,
                    "the interval resamples initial states; it does not include the model's error",
                )
            }
            _ => {
                let (traj, source) = if e == Estimator::Ris {
                    (ris_traj.as_ref(), ESTIMATED)
                } else {
                    (main_traj.as_ref(), behavior_source)
                };
                match traj {
                    None => Estimate {
                        estimator: e.name(),
                        value: None,
                        interval: None,
                        n: data.episodes.len(),
                        ess: None,
                        max_weight: None,
                        behavior: None,
                        warnings: vec![
                            "undefined: the policy has no density (deterministic continuous actions), so importance weights do not exist; use fqe or model".into(),
                        ],
                    },
                    Some(t) => {
                        let mut est = weighted_estimate(e, t, cfg, seed, source);
                        if matches!(e, Estimator::Dr | Estimator::Wdr) {
                            fit_note(&mut est, fqe_fit.as_ref());
                        }
                        est
                    }
                }
            }
        };
        estimates.push(est);
    }
    Ok(OpeReport {
        target: format!(
            "expected discounted return (gamma {}) of the first {} steps (the time limit) from the data's initial states",
            cfg.gamma, data.horizon
        ),
        horizon: data.horizon,
        fqe_fit,
        episodes: data.episodes.len(),
        dropped_episodes: data.dropped_episodes,
        transitions: data.len(),
        behavior_source: behavior_source.to_string(),
        estimates,
        config: cfg.clone(),
    })
}

/// Adds how the FQE fit went to an estimate that rests on it.
fn fit_note(est: &mut Estimate, fit: Option<&FqeFit>) {
    if let Some(f) = fit {
        est.warnings.push(f.describe());
    }
}

/// An estimate that is the mean of per-unit values (FQE, model-based).
fn unit_estimate(e: Estimator, vals: &[f64], cfg: &OpeConfig, seed: u64, note: &str) -> Estimate {
    let mut warnings = vec![note.to_string()];
    let value = if vals.is_empty() {
        warnings.push("undefined: no initial state".into());
        None
    } else {
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        if m.is_finite() {
            Some(m)
        } else {
            warnings.push(format!(
                "undefined: the {} estimate is not finite",
                e.name()
            ));
            None
        }
    };
    Estimate {
        estimator: e.name(),
        value,
        interval: value.and(bootstrap_mean(vals, cfg.resamples, cfg.level, seed)),
        n: vals.len(),
        ess: None,
        max_weight: None,
        behavior: None,
        warnings,
    }
}

/// An importance-sampling-family estimate with its interval and weight diagnostics.
fn weighted_estimate(
    e: Estimator,
    traj: &[Trajectory],
    cfg: &OpeConfig,
    seed: u64,
    source: &str,
) -> Estimate {
    let kind = e.is_kind().unwrap_or(IsKind::Pdis);
    let refs: Vec<&Trajectory> = traj.iter().collect();
    let mut warnings = Vec::new();
    let stats = weight_stats(&refs, cfg.clip);
    let value = match stats {
        None => Err(Undefined::ZeroWeights),
        Some(_) => estimate(kind, &refs, cfg.gamma, cfg.clip),
    };
    let value = match value {
        Ok(v) if v.is_finite() => Some(v),
        Ok(v) => {
            warnings.push(format!("undefined: the estimate is not finite ({v})"));
            None
        }
        Err(u) => {
            warnings.push(format!("undefined: {u}"));
            None
        }
    };
    let interval = value.and_then(|_| {
        bootstrap(refs.len(), cfg.resamples, cfg.level, seed, |idx| {
            let sample: Vec<&Trajectory> = idx.iter().map(|&i| refs[i]).collect();
            estimate(kind, &sample, cfg.gamma, cfg.clip).ok()
        })
    });
    if value.is_some() && interval.is_none() {
        warnings.push(
            "no interval: fewer than half of the bootstrap resamples gave a finite estimate".into(),
        );
    }
    if let Some((ess, _)) = stats
        && ess < 0.01 * refs.len() as f64 + 1.0
    {
        warnings.push(format!(
            "effective sample size {ess:.2} of {} episodes: the episode weights are degenerate, the estimate rests on a few episodes",
            refs.len()
        ));
    }
    if let Some(c) = cfg.clip {
        warnings.push(format!("weights clipped at {c}: biased"));
    }
    Estimate {
        estimator: e.name(),
        value,
        interval,
        n: refs.len(),
        ess: stats.map(|s| s.0),
        max_weight: stats.map(|s| s.1),
        behavior: Some(source.to_string()),
        warnings,
    }
}
