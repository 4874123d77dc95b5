//! Range checks of settings, shared by every algorithm's `Config::validate` and the training
//! [`crate::Recipe`]. Each check fails with [`AlgoError::Setting`] naming the key, the value and
//! what is expected, before any network is built.

use crate::error::{AlgoError, Result};

/// Widest hidden layer accepted. Wider networks are not what offline RL trains (the papers use
/// 256; d3rlpy and CORL at most 1024), and a typo such as `hidden = [2560000]` should be an error,
/// not an attempt to allocate terabytes.
pub const MAX_WIDTH: usize = 16_384;
/// Most hidden layers accepted.
pub const MAX_LAYERS: usize = 64;
/// Largest count of sampled actions, latents or steps per update accepted (CQL's `n_actions`,
/// BCQ's `n_samples`): the batch grows with it.
pub const MAX_SAMPLES: usize = 4096;

/// `hidden`: 1 to [`MAX_LAYERS`] layers, each of 1 to [`MAX_WIDTH`] units.
pub fn hidden(key: &str, h: &[usize]) -> Result<()> {
    if h.is_empty() || h.len() > MAX_LAYERS {
        return Err(AlgoError::setting(
            key,
            format!("{h:?}"),
            &format!("1 to {MAX_LAYERS} hidden layer sizes"),
        ));
    }
    if let Some(w) = h.iter().find(|&&w| w == 0 || w > MAX_WIDTH) {
        return Err(AlgoError::setting(
            key,
            format!("{h:?}"),
            &format!("layer sizes from 1 to {MAX_WIDTH} (found {w})"),
        ));
    }
    Ok(())
}

/// A finite value `> 0` (learning rates, temperatures, scales).
pub fn positive(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(AlgoError::setting(key, v, "a finite number > 0"))
    }
}

/// A finite value `>= 0` (regulariser weights).
pub fn non_negative(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(AlgoError::setting(key, v, "a finite number >= 0"))
    }
}

/// A finite value (targets, offsets).
pub fn finite(key: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(AlgoError::setting(key, v, "a finite number"))
    }
}

/// A value in `(0, 1]` (polyak coefficients, discounts).
pub fn unit_open_closed(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(AlgoError::setting(key, v, "a number in (0, 1]"))
    }
}

/// A value in `(0, 1)` (expectiles).
pub fn unit_open(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(AlgoError::setting(key, v, "a number in (0, 1)"))
    }
}

/// A value in `[0, 1]` (probabilities, thresholds, interpolation weights).
pub fn unit_closed(key: &str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(AlgoError::setting(key, v, "a number in [0, 1]"))
    }
}

/// A count from 1 to `max`.
pub fn count(key: &str, v: usize, max: usize) -> Result<()> {
    if (1..=max).contains(&v) {
        Ok(())
    } else {
        Err(AlgoError::setting(
            key,
            v,
            &format!("an integer from 1 to {max}"),
        ))
    }
}

/// `lo < hi`, both finite.
pub fn ordered(key: &str, lo: f64, hi: f64) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && lo < hi {
        Ok(())
    } else {
        Err(AlgoError::setting(
            key,
            format!("[{lo}, {hi}]"),
            "finite bounds with min < max",
        ))
    }
}
