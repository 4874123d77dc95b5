//! candle building blocks for orl (MLP, batched critic ensembles, actors, VAE, Adam,
//! polyak updates, safetensors checkpoints, the `Policy` trait).
//!
//! **Not implemented yet**: this crate is a placeholder for issue 4 and exports nothing.
//! It will depend on candle and never on Arrow (see `docs/ARCHITECTURE.md`).
