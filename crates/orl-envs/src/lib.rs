//! Gymnasium-exact environments (classic control in pure Rust, Hopper/HalfCheetah/Walker2d v5
//! through MuJoCo) and policy evaluation.
//!
//! **Not implemented yet**: this crate is a placeholder for issue 3 and exports nothing.
//! It will never depend on candle (see `docs/ARCHITECTURE.md`).
