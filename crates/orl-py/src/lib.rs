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

/// Sets the number of threads orl's training uses in this process (default 1: one per run;
/// several runs fill the cores best). Callable once, before the first training call.
#[pyfunction]
fn set_threads(n: usize) -> PyResult<()> {
    if n == 0 {
        return Err(errors::value("threads: expected at least 1, got 0"));
    }
    orl_nets::threads::init_pool(n);
    Ok(())
}
