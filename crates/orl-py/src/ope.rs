//! `orl.ope`: off-policy estimates of a policy's value on logged data, with bootstrap
//! intervals (`orl ope`).

use orl_ope::{Estimator, OpeConfig};
use pyo3::prelude::*;

use crate::dataset::PyDataset;
use crate::errors;
use crate::policy::PyPolicy;

/// Runs the estimators; returns the `orl ope --json` report as JSON text.
///
/// `config_json` holds any `OpeConfig` field (`gamma`, `fqe`, `model`, `behavior`, ...);
/// `estimators` (`all` or a comma-separated list), `gamma` and `seed` override it. The
/// discount defaults to the policy's training discount, else 0.99.
#[pyfunction]
#[pyo3(signature = (policy, dataset, estimators="all", gamma=None, seed=None, config_json=None))]
pub fn _ope(
    py: Python<'_>,
    policy: &PyPolicy,
    dataset: &PyDataset,
    estimators: &str,
    gamma: Option<f64>,
    seed: Option<u64>,
    config_json: Option<String>,
) -> PyResult<String> {
    crate::ensure_threads(None)?;
    let mut cfg = match config_json {
        Some(t) => serde_json::from_str::<OpeConfig>(&t)
            .map_err(|e| errors::value(format!("config: not an OPE configuration: {e}")))?,
        None => OpeConfig {
            gamma: policy.gamma.unwrap_or(OpeConfig::default().gamma),
            ..OpeConfig::default()
        },
    };
    cfg.estimators = Estimator::parse_list(estimators).map_err(errors::ope)?;
    if let Some(g) = gamma {
        cfg.gamma = g;
    }
    if let Some(s) = seed {
        cfg.seed = s;
    }
    let mut guard = policy.agent();
    let agent: &mut orl_algos::Agent = &mut guard;
    let report = py
        .detach(|| orl_ope::evaluate(&dataset.inner, agent, &cfg))
        .map_err(errors::ope)?;
    serde_json::to_string(&report).map_err(|e| errors::value(format!("serialising: {e}")))
}
