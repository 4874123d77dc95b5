//! `cargo xtask bench-d4rl`: the D4RL-style benchmark grid (issue 6).
//!
//! Not implemented yet. The grid trains CQL, IQL, BCQ, TD3+BC and BC (issue 4) on datasets
//! generated with orl's own environments (issue 3), none of which exist in this tree yet.

use anyhow::{Result, bail};

/// Fails with an explanation; nothing is run.
pub fn run(_args: &[String]) -> Result<()> {
    bail!(
        "bench-d4rl is not implemented yet: it needs the algorithms (orl-algos, issue 4) and the \
         environments (orl-envs, issue 3), which have not landed. What works today: `orl convert` \
         and `orl inspect` (see README.md)."
    )
}
