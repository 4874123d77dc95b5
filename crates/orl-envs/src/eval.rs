//! Policy evaluation: run a [`Policy`] for K episodes across threads, with D4RL-normalised scores.

use crate::env::Env;
use crate::error::{EnvError, Result};
use crate::space::OwnedAction;

/// What evaluation needs of a policy: an action for a `float32` observation.
///
/// This trait is deliberately free of any tensor library, so that `orl-envs` stays independent
/// of candle; `orl-algos` policies implement it.
pub trait Policy {
    /// The action for `observation` (the environment's observation cast to `f32`).
    fn act(
        &mut self,
        observation: &[f32],
    ) -> std::result::Result<OwnedAction, Box<dyn std::error::Error + Send + Sync>>;
}

impl<F> Policy for F
where
    F: FnMut(&[f32]) -> OwnedAction,
{
    fn act(
        &mut self,
        observation: &[f32],
    ) -> std::result::Result<OwnedAction, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self(observation))
    }
}

/// Reference returns for normalising scores as D4RL does:
/// `100 * (return - min) / (max - min)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefScores {
    /// Return of the random policy.
    pub min: f64,
    /// Return of the expert policy.
    pub max: f64,
}

impl RefScores {
    /// The normalised score of `ret`.
    pub fn normalize(&self, ret: f64) -> f64 {
        100.0 * (ret - self.min) / (self.max - self.min)
    }

    /// D4RL's published references (`d4rl/infos.py`, `REF_MIN_SCORE`/`REF_MAX_SCORE`) for the
    /// locomotion tasks, keyed by environment family (`hopper`, `halfcheetah`, `walker2d`, or a
    /// Gymnasium id such as `Hopper-v5`). Other environments have no published reference: use
    /// dataset-specific ones.
    pub fn d4rl(env: &str) -> Option<RefScores> {
        let family = env.split('-').next().unwrap_or(env).to_ascii_lowercase();
        match family.as_str() {
            "hopper" => Some(RefScores {
                min: -20.272305,
                max: 3234.3,
            }),
            "halfcheetah" => Some(RefScores {
                min: -280.178953,
                max: 12135.0,
            }),
            "walker2d" => Some(RefScores {
                min: 1.629008,
                max: 4592.3,
            }),
            _ => None,
        }
    }
}

/// Settings of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    /// Number of episodes.
    pub episodes: usize,
    /// Episode `i` is reset with seed `seed + i`, whatever the thread count.
    pub seed: u64,
    /// Worker threads (at most `episodes`).
    pub threads: usize,
    /// Reference returns for the normalised score, if known.
    pub reference: Option<RefScores>,
}

impl Default for EvalConfig {
    /// 10 episodes: D4RL's evaluation protocol (Fu et al. 2020, section 5), as CORL uses it;
    /// seed 0; threads as available (at most 2 on the reference machine).
    fn default() -> Self {
        Self {
            episodes: 10,
            seed: 0,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            reference: None,
        }
    }
}

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Undiscounted return of each episode, in episode order.
    pub returns: Vec<f64>,
    /// Length of each episode.
    pub lengths: Vec<usize>,
    /// Mean return.
    pub mean: f64,
    /// Population standard deviation of the returns.
    pub std: f64,
    /// Smallest return.
    pub min: f64,
    /// Largest return.
    pub max: f64,
    /// Mean normalised score, when references were given.
    pub normalized_mean: Option<f64>,
    /// Population std of the normalised scores, when references were given.
    pub normalized_std: Option<f64>,
}

/// Runs `make_policy()`'s policy for `cfg.episodes` episodes of `make_env()`'s environment,
/// spread over `cfg.threads` threads (each thread makes its own environment and policy).
///
/// Episodes end at `terminated` or `truncated`, so pass an environment from [`crate::make`] to
/// get the registered time limit. Results do not depend on the thread count.
pub fn evaluate<E, P, ME, MP>(make_env: ME, make_policy: MP, cfg: &EvalConfig) -> Result<EvalReport>
where
    E: Env,
    P: Policy,
    ME: Fn() -> Result<E> + Sync,
    MP: Fn() -> P + Sync,
{
    if cfg.episodes == 0 {
        return Err(EnvError::InvalidConfig(
            "episodes must be at least 1".into(),
        ));
    }
    let threads = cfg.threads.clamp(1, cfg.episodes);
    let mut results: Vec<Option<(f64, usize)>> = vec![None; cfg.episodes];
    let chunks: Vec<Vec<usize>> = (0..threads)
        .map(|t| (t..cfg.episodes).step_by(threads).collect())
        .collect();
    let outcomes: Vec<Result<Vec<(usize, f64, usize)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|episodes| {
                let (make_env, make_policy) = (&make_env, &make_policy);
                scope.spawn(move || -> Result<Vec<(usize, f64, usize)>> {
                    let mut env = make_env()?;
                    let mut policy = make_policy();
                    episodes
                        .iter()
                        .map(|&i| {
                            let (ret, len) =
                                run_episode(&mut env, &mut policy, cfg.seed + i as u64, i)?;
                            Ok((i, ret, len))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EnvError::InvalidConfig(
                        "an evaluation thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    for outcome in outcomes {
        for (i, ret, len) in outcome? {
            results[i] = Some((ret, len));
        }
    }
    let (returns, lengths): (Vec<f64>, Vec<usize>) = results.into_iter().flatten().unzip();
    Ok(report(returns, lengths, cfg.reference))
}

/// Runs one episode from `reset(Some(seed))`; returns the undiscounted return and the length.
pub fn run_episode<E: Env, P: Policy>(
    env: &mut E,
    policy: &mut P,
    seed: u64,
    episode: usize,
) -> Result<(f64, usize)> {
    let mut obs = Vec::new();
    let mut obs32 = Vec::new();
    env.reset_into(Some(seed), &mut obs);
    let (mut ret, mut len) = (0.0, 0);
    loop {
        obs32.clear();
        obs32.extend(obs.iter().map(|&v| v as f32));
        let action = policy.act(&obs32).map_err(|source| EnvError::Policy {
            episode,
            step: len,
            source,
        })?;
        let o = env.step_into(action.as_action(), &mut obs)?;
        ret += o.reward;
        len += 1;
        if o.terminated || o.truncated {
            return Ok((ret, len));
        }
    }
}

impl EvalReport {
    /// The report of episodes with these returns and lengths (in episode order), normalised
    /// by `reference` when given: what [`evaluate`] returns, for episodes run elsewhere (a
    /// Python environment).
    pub fn from_episodes(
        returns: Vec<f64>,
        lengths: Vec<usize>,
        reference: Option<RefScores>,
    ) -> EvalReport {
        report(returns, lengths, reference)
    }
}

fn report(returns: Vec<f64>, lengths: Vec<usize>, reference: Option<RefScores>) -> EvalReport {
    let (mean, std) = mean_std(&returns);
    let min = returns.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = returns.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let norm =
        reference.map(|r| mean_std(&returns.iter().map(|&x| r.normalize(x)).collect::<Vec<_>>()));
    EvalReport {
        returns,
        lengths,
        mean,
        std,
        min,
        max,
        normalized_mean: norm.map(|n| n.0),
        normalized_std: norm.map(|n| n.1),
    }
}

fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}
