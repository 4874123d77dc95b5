//! One thread per run: the intra-op thread count of candle and gemm.
//!
//! At orl's sizes (batch 256, 256-wide layers) a second intra-op thread does not pay for its
//! synchronisation, and with the old default of all cores two runs on a 2-core machine fought
//! over both (`orl train --algo iql` fell to 5.7 updates/s beside one other process). The
//! engine is single-threaded; candle (the algorithms still on it, the GPU path) reads its
//! thread count from `RAYON_NUM_THREADS` once, and setting the environment of a running
//! process is `unsafe`, so [`reexec_with_threads`] re-runs the process with it set.
//! Parallelism comes from running several jobs (`bench-d4rl --jobs`).

use std::ffi::OsString;
use std::process::Command;

/// The environment variable candle and rayon read their thread count from.
pub const THREADS_ENV: &str = "RAYON_NUM_THREADS";

/// The thread count a run should use: `requested`, else `RAYON_NUM_THREADS` when set, else 1.
pub fn resolve_threads(requested: Option<usize>) -> usize {
    requested
        .or_else(|| std::env::var(THREADS_ENV).ok()?.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Makes this process run with `threads` intra-op threads. Returns `Ok(None)` when it already
/// does (carry on), or `Ok(Some(code))` after re-running the same command line with
/// `RAYON_NUM_THREADS=threads` (and `MIMALLOC_PURGE_DELAY=-1` unless set: mimalloc then keeps
/// freed pages, which candle's per-op buffers reuse); the caller exits with `code`.
pub fn reexec_with_threads(threads: usize) -> std::io::Result<Option<i32>> {
    let want = threads.to_string();
    if std::env::var(THREADS_ENV).ok().as_deref() == Some(want.as_str()) {
        return Ok(None);
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let status = Command::new(std::env::current_exe()?)
        .args(&args)
        .env(THREADS_ENV, &want)
        .env(
            "MIMALLOC_PURGE_DELAY",
            std::env::var_os("MIMALLOC_PURGE_DELAY").unwrap_or_else(|| "-1".into()),
        )
        .status()?;
    Ok(Some(status.code().unwrap_or(1)))
}
