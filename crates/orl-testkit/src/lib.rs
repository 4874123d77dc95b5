//! Test support shared by orl's crates (a dev-dependency only; nothing ships it).
//!
//! Why a crate: the same two pieces were written out in several crates' tests, and a copy that
//! drifts makes two tests disagree about what "the fixtures folder" or "gradients agree"
//! means.
//!
//! - [`fixtures_root`]: where the reference fixtures are (`ORL_FIXTURES`, default
//!   `../shared/fixtures` beside the workspace), and whether their absence skips or fails.
//! - [`parity`] (feature `parity`): the tolerance and the assertion with which the engine's
//!   losses and gradients are compared with candle's autograd in `orl-algos` and `orl-ope`.
//!
//! ```
//! // Without the folder (and without CI or ORL_FIXTURES set) the fixture tests skip.
//! if let Some(root) = orl_testkit::fixtures_root() {
//!     assert!(root.is_dir());
//! }
//! ```

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixtures folder: `ORL_FIXTURES` (relative to the workspace root unless absolute), by
/// default `../shared/fixtures` beside the workspace. `None` (with a `SKIP` line on stderr) when
/// it is absent; a panic when it is absent although `CI` or `ORL_FIXTURES` is set, so that CI
/// never passes by skipping.
pub fn fixtures_root() -> Option<PathBuf> {
    let workspace = workspace_root();
    let root = match std::env::var_os("ORL_FIXTURES") {
        Some(p) if Path::new(&p).is_absolute() => PathBuf::from(p),
        Some(p) => workspace.join(p),
        None => workspace.join("../shared/fixtures"),
    };
    if root.is_dir() {
        Some(root)
    } else if std::env::var_os("CI").is_some() || std::env::var_os("ORL_FIXTURES").is_some() {
        panic!(
            "fixtures folder {} is absent, but CI or ORL_FIXTURES is set: the fixture tests must run",
            root.display()
        );
    } else {
        eprintln!(
            "SKIP: fixtures folder {} is absent (set ORL_FIXTURES to the folder holding the fixtures)",
            root.display()
        );
        None
    }
}

#[cfg(feature = "parity")]
pub mod parity;
