//! Observation and action spaces in Gymnasium's shape: `Box` (bounds and dtype) and `Discrete`.

use crate::error::{EnvError, Result};

/// Element type of a `Box` space, as Gymnasium declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `np.float32` (classic-control observations, every action space).
    F32,
    /// `np.float64` (MuJoCo observations).
    F64,
}

impl Dtype {
    /// NumPy's name of the dtype.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// A Gymnasium space.
#[derive(Debug, Clone, PartialEq)]
pub enum Space {
    /// `gymnasium.spaces.Box`: a vector of `low.len()` values in `[low, high]` (bounds may be infinite).
    Box {
        /// Lower bounds, one per dimension.
        low: Vec<f64>,
        /// Upper bounds, one per dimension.
        high: Vec<f64>,
        /// Element type.
        dtype: Dtype,
    },
    /// `gymnasium.spaces.Discrete(n)` with `start = 0`: the integers `0..n`.
    Discrete {
        /// Number of actions.
        n: usize,
    },
}

impl Space {
    /// A `Box` of `f32` values with the given bounds (given as `f32`, as Gymnasium stores them).
    pub fn box_f32(low: &[f32], high: &[f32]) -> Self {
        Space::Box {
            low: low.iter().map(|&v| f64::from(v)).collect(),
            high: high.iter().map(|&v| f64::from(v)).collect(),
            dtype: Dtype::F32,
        }
    }

    /// Number of values in one element: the Box dimension, or 1 for `Discrete`.
    pub fn dim(&self) -> usize {
        match self {
            Space::Box { low, .. } => low.len(),
            Space::Discrete { .. } => 1,
        }
    }

    /// Whether this is a `Discrete` space.
    pub fn is_discrete(&self) -> bool {
        matches!(self, Space::Discrete { .. })
    }

    /// Short human-readable form, e.g. `Box(3, float32, [-1, 1])` or `Discrete(2)`.
    pub fn describe(&self) -> String {
        match self {
            Space::Discrete { n } => format!("Discrete({n})"),
            Space::Box { low, high, dtype } => {
                let lo = low.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = high.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let (lo, hi) = match dtype {
                    // Print float32 bounds as float32 (-1.2, not -1.2000000476837158).
                    Dtype::F32 => ((lo as f32).to_string(), (hi as f32).to_string()),
                    Dtype::F64 => (lo.to_string(), hi.to_string()),
                };
                format!("Box({}, {}, [{lo}, {hi}])", low.len(), dtype.name())
            }
        }
    }
}

/// An action handed to [`crate::Env::step`], borrowed so stepping allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'a> {
    /// An index into a `Discrete` space.
    Discrete(i64),
    /// A vector in a `Box` space (`f32`, the dtype of every Gymnasium action space used here).
    Continuous(&'a [f32]),
}

impl Action<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Action::Discrete(_) => "discrete",
            Action::Continuous(_) => "continuous",
        }
    }
}

/// An owned action, as a policy returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnedAction {
    /// An index into a `Discrete` space.
    Discrete(i64),
    /// A vector in a `Box` space.
    Continuous(Vec<f32>),
}

impl OwnedAction {
    /// Borrow as an [`Action`].
    pub fn as_action(&self) -> Action<'_> {
        match self {
            OwnedAction::Discrete(a) => Action::Discrete(*a),
            OwnedAction::Continuous(v) => Action::Continuous(v),
        }
    }
}

/// Checks that `action` belongs to `space`'s kind and size and is finite.
///
/// Continuous values outside the bounds are accepted: Gymnasium's environments clip them
/// (Pendulum, MountainCarContinuous) or MuJoCo clamps them to `ctrlrange`.
pub fn validate_action(env: &'static str, space: &Space, action: Action<'_>) -> Result<()> {
    match (space, action) {
        (Space::Discrete { n }, Action::Discrete(a)) => {
            if a < 0 || a as u64 >= *n as u64 {
                return Err(EnvError::DiscreteOutOfRange {
                    env,
                    action: a,
                    n: *n,
                });
            }
            Ok(())
        }
        (Space::Box { low, .. }, Action::Continuous(v)) => {
            if v.len() != low.len() {
                return Err(EnvError::ActionLength {
                    env,
                    expected: low.len(),
                    found: v.len(),
                });
            }
            if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(EnvError::NonFiniteAction { env, index, value });
            }
            Ok(())
        }
        (space, action) => Err(EnvError::ActionKind {
            env,
            expected: if space.is_discrete() {
                "discrete"
            } else {
                "continuous"
            },
            found: action.kind(),
        }),
    }
}

/// Validates a continuous action and returns its values.
pub(crate) fn expect_continuous<'a>(
    env: &'static str,
    space: &Space,
    action: Action<'a>,
) -> Result<&'a [f32]> {
    validate_action(env, space, action)?;
    match action {
        Action::Continuous(v) => Ok(v),
        Action::Discrete(_) => Err(EnvError::ActionKind {
            env,
            expected: "continuous",
            found: "discrete",
        }),
    }
}

/// Validates a discrete action and returns it as an index.
pub(crate) fn expect_discrete(
    env: &'static str,
    space: &Space,
    action: Action<'_>,
) -> Result<usize> {
    validate_action(env, space, action)?;
    match action {
        Action::Discrete(a) => Ok(a as usize),
        Action::Continuous(_) => Err(EnvError::ActionKind {
            env,
            expected: "discrete",
            found: "continuous",
        }),
    }
}
