//! Threads of a run: one by default, `--threads N` for more.
//!
//! One thread per run is the default: with the old default of all cores two runs on a 2-core
//! machine fought over both (`orl train --algo iql` fell to 5.7 updates/s beside one other
//! process), and running several jobs (`bench-d4rl --jobs`) fills the cores best. A single run
//! can still use a second thread: the engine runs the members of an ensemble (twin critics, the
//! dynamics ensemble) on rayon's threads when a member's pass is long enough, and IQL computes
//! its critic half beside its value-and-policy half. Measured on a 2-core Xeon with
//! `update_speed` (`docs/performance.md`): 2 threads gave TD3+BC +17-27 %, IQL +19-52 %,
//! CQL +43-51 %, BCQ +5-11 % updates/s over one; the numbers are the same either way.
//!
//! candle and rayon read their thread count from `RAYON_NUM_THREADS` once, and setting the
//! environment of a running process is `unsafe`, so [`reexec_with_threads`] re-runs the process
//! with it set, and [`init_pool`] makes the running thread one of the pool's.

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

/// Makes this thread one of rayon's `threads` workers when `threads > 1` (rayon's
/// `use_current_thread`), so that the engine's parallel passes (ensemble members, IQL's two
/// update halves) split between this thread and the others, instead of handing the work to a
/// pool of `threads` while this thread waits beside them: on a 2-core machine that third thread
/// cost BCQ 13 % of its updates/s. Call it once at the start of a run, before anything uses
/// rayon; later calls change nothing.
pub fn init_pool(threads: usize) {
    if threads > 1 {
        // An error means the pool exists already (a second call): keep it.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .use_current_thread()
            .build_global();
    }
}
