//! Off-policy evaluation: IS, WIS, PDIS, DR, RIS, FQE and model-based estimates with
//! bootstrap confidence intervals.
//!
//! **Not implemented yet**: this crate is a placeholder for issue 5 and exports nothing.
//! It will work with any policy through a trait and never depend on `orl-algos`.
