//! The native half of the `orl` Python package (`orl._orl`); the Python half is
//! `python/orl/__init__.py`, which is what users import.
//!
//! Why this shape: the Rust crates stay free of pyo3, and this crate only maps types and
//! errors. Arrays cross as NumPy's `(dtype, shape, bytes)` so that the data layer's own
//! decoder validates them (no second validation path); tables cross through the Arrow C data
//! interface; reports cross as JSON text, which the Python half turns into dicts, so every
//! report has one serialisation, the CLI's `--json`. Errors become `ValueError`, `OSError`
//! or `RuntimeError` with orl's message (`errors`). Long calls release the GIL.

mod dataset;
mod errors;
mod ope;
mod policy;

use std::sync::OnceLock;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _orl(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MUJOCO_ENABLED", orl_envs::MUJOCO_ENABLED)?;
    m.add_class::<dataset::PyDataset>()?;
    m.add_class::<policy::PyPolicy>()?;
    m.add_function(wrap_pyfunction!(dataset::convert, m)?)?;
    m.add_function(wrap_pyfunction!(policy::load, m)?)?;
    m.add_function(wrap_pyfunction!(policy::_train, m)?)?;
    m.add_function(wrap_pyfunction!(policy::_evaluate_orl, m)?)?;
    m.add_function(wrap_pyfunction!(policy::_report, m)?)?;
    m.add_function(wrap_pyfunction!(ope::_ope, m)?)?;
    m.add_function(wrap_pyfunction!(algorithms, m)?)?;
    m.add_function(wrap_pyfunction!(environments, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    Ok(())
}

/// The registry's algorithms as `(name, summary)` pairs.
#[pyfunction]
fn algorithms() -> Vec<(&'static str, &'static str)> {
    orl_algos::ALGORITHMS
        .iter()
        .map(|i| (i.name, i.summary))
        .collect()
}

/// The registry's environments (Gymnasium ids) this build can make.
#[pyfunction]
fn environments() -> Vec<&'static str> {
    orl_envs::REGISTRY
        .iter()
        .filter(|s| orl_envs::MUJOCO_ENABLED || !s.needs_mujoco)
        .map(|s| s.id)
        .collect()
}

/// The thread count of orl's pool in this process, fixed at its first use.
static THREADS: OnceLock<usize> = OnceLock::new();

/// Builds orl's thread pool on first use: `requested` threads, else `RAYON_NUM_THREADS`, else
/// 1 (one thread per run, as the CLI: several runs side by side, such as Ray trials, fill the
/// cores best, and intra-op threads would fight them). The pool's own threads do the work and
/// the calling thread waits, so any Python thread may train. Asking for another count once the
/// pool exists is an error naming both.
pub(crate) fn ensure_threads(requested: Option<usize>) -> PyResult<usize> {
    let want = orl_nets::threads::resolve_threads(requested);
    let got = *THREADS.get_or_init(|| {
        // An error means rayon's global pool exists already (built by another library in
        // this process); it is then used as it is.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(want)
            .build_global();
        rayon::current_num_threads()
    });
    match requested {
        Some(r) if r != got => Err(errors::value(format!(
            "threads: orl's thread pool already has {got} thread(s) in this process; call orl.set_threads({r}) before the first training, evaluation or OPE call"
        ))),
        _ => Ok(got),
    }
}

/// Sets the number of threads orl uses in this process (default 1, or `RAYON_NUM_THREADS`);
/// call it before the first training, evaluation or OPE call.
#[pyfunction]
fn set_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(errors::value("threads: expected at least 1, got 0"));
    }
    ensure_threads(Some(n)).map(|_| ())
}

/// The number of threads orl uses in this process (building its pool if needed).
#[pyfunction]
fn threads() -> PyResult<usize> {
    ensure_threads(None)
}
