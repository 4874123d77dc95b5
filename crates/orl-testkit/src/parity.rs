//! The gradient-parity assertion: an engine loss and its parameter gradients against candle's
//! autograd of the same loss from the same parameters.
//!
//! Tolerance: per tensor, `max |g_engine - g_candle| <= RTOL * max(max |g_candle|, FLOOR)`,
//! and the same for the loss value. Both sides compute in `f32` with different summation
//! orders (a 256-row sum in a different order differs by about 1e-6 relative of the largest
//! term), so a per-element relative test would fail on elements that cancel to near zero; the
//! scale of the tensor's largest element is the natural unit, and the floor keeps a gradient
//! that is zero on both sides from turning rounding noise into a failure.

use candle_core::Tensor;
use orl_nets::ParamStore;

/// Relative tolerance, in units of the tensor's largest element.
pub const RTOL: f64 = 1e-5;
/// The smallest scale a tensor's error is measured against.
pub const FLOOR: f64 = 1e-3;

/// The largest absolute value of `v` (0 when empty).
pub fn max_abs(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(x.abs())).fold(0.0, f64::max)
}

/// Asserts that `got` equals `want` element by element within the tolerance above
/// (`max |got - want| <= RTOL * max(max |want|, FLOOR)`): two backends' parameters after the
/// same updates, or one buffer computed two ways.
pub fn assert_close(case: &str, what: &str, want: &[f32], got: &[f32]) {
    assert_eq!(want.len(), got.len(), "{case}: {what}: lengths differ");
    let scale = max_abs(want).max(FLOOR);
    let err = want
        .iter()
        .zip(got)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    assert!(
        err <= RTOL * scale,
        "{case}: {what}: max error {err:e} against scale {scale:e}"
    );
}

/// Asserts that the engine's `value` of the loss `what` equals `oracle` (a scalar candle
/// tensor) and that each engine gradient `(parameter name, dL/dparameter)` equals candle's
/// gradient of `oracle` with respect to that parameter of `store`, within the tolerance above.
/// A parameter candle's backward does not reach counts as a zero gradient. With
/// `require_nonzero`, an engine gradient that is zero everywhere fails too (a loss that does
/// not reach a network it should train).
pub fn assert_grads_match(
    case: &str,
    what: &str,
    value: f64,
    grads: &[(String, Vec<f32>)],
    oracle: &Tensor,
    store: &ParamStore,
    require_nonzero: bool,
) {
    let want = f64::from(
        oracle
            .to_scalar::<f32>()
            .unwrap_or_else(|e| panic!("{case}: {what}: candle's loss is not a scalar: {e}")),
    );
    assert!(
        (value - want).abs() <= RTOL * want.abs().max(FLOOR),
        "{case}: {what} = {value} (engine) vs {want} (candle)"
    );
    let back = oracle
        .backward()
        .unwrap_or_else(|e| panic!("{case}: {what}: candle's backward failed: {e}"));
    assert!(!grads.is_empty(), "{case}: {what}: no gradients to compare");
    for (name, g) in grads {
        let var = store
            .get(name)
            .unwrap_or_else(|| panic!("{case}: candle has no {name}"));
        let c: Vec<f32> = match back.get(var.as_tensor()) {
            Some(t) => t
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .unwrap_or_else(|e| panic!("{case}: {what}: reading d/d{name}: {e}")),
            None => vec![0.0; g.len()],
        };
        assert_eq!(c.len(), g.len(), "{case}: {what}: {name} size");
        let scale = max_abs(&c).max(FLOOR);
        let err = g
            .iter()
            .zip(&c)
            .map(|(a, b)| f64::from((a - b).abs()))
            .fold(0.0, f64::max);
        assert!(
            err <= RTOL * scale,
            "{case}: d {what} / d {name}: max error {err:e} against scale {scale:e}"
        );
        if require_nonzero {
            assert!(max_abs(g) > 0.0, "{case}: d {what} / d {name} is all zero");
        }
    }
}
