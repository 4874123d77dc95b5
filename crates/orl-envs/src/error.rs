//! Typed errors of `orl-envs`.

/// Result alias used throughout `orl-envs`.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;

/// Everything that can go wrong when making, resetting or stepping an environment.
///
/// Bad actions are errors, never panics: a policy that emits NaN or the wrong number of
/// values learns it from the `Err`, and the environment's state is left unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// `make` was given an id that is not registered.
    #[error("unknown environment `{id}` (known: {known})")]
    UnknownEnv {
        /// The id asked for.
        id: String,
        /// Comma-separated list of registered ids.
        known: String,
    },
    /// The action has the wrong kind (discrete index for a Box space, or the reverse).
    #[error("{env}: expected a {expected} action, got a {found} one")]
    ActionKind {
        /// Environment id.
        env: &'static str,
        /// "discrete" or "continuous".
        expected: &'static str,
        /// "discrete" or "continuous".
        found: &'static str,
    },
    /// A continuous action has the wrong number of values.
    #[error("{env}: action has {found} values, the action space has {expected}")]
    ActionLength {
        /// Environment id.
        env: &'static str,
        /// Action-space dimension.
        expected: usize,
        /// Length received.
        found: usize,
    },
    /// A continuous action holds NaN or infinity.
    #[error("{env}: action value {index} is {value}, which is not finite")]
    NonFiniteAction {
        /// Environment id.
        env: &'static str,
        /// Index of the offending value.
        index: usize,
        /// The value (NaN or +-inf).
        value: f32,
    },
    /// A discrete action is outside `0..n`.
    #[error("{env}: discrete action {action} is outside 0..{n}")]
    DiscreteOutOfRange {
        /// Environment id.
        env: &'static str,
        /// The action received.
        action: i64,
        /// Number of actions.
        n: usize,
    },
    /// `step` was called before the first `reset`.
    #[error("{env}: step called before reset")]
    NotReset {
        /// Environment id.
        env: &'static str,
    },
    /// `set_state` got a state vector of the wrong length or with non-finite values.
    #[error("{env}: bad state: {reason}")]
    BadState {
        /// Environment id.
        env: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The MuJoCo model could not be loaded or the library failed.
    #[error("{env}: MuJoCo: {reason}")]
    Mujoco {
        /// Environment id.
        env: &'static str,
        /// MuJoCo's message.
        reason: String,
    },
    /// The policy failed to produce an action during evaluation.
    #[error("policy failed on episode {episode}, step {step}")]
    Policy {
        /// Episode index within the evaluation.
        episode: usize,
        /// Step within the episode.
        step: usize,
        /// The policy's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Evaluation was asked for zero episodes or another invalid setting.
    #[error("invalid evaluation setting: {0}")]
    InvalidConfig(String),
}
