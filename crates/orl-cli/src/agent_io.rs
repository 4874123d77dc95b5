//! Loading a trained agent from a checkpoint (a run folder or a `.safetensors` file), and the
//! metadata keys `orl train` adds to checkpoints.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use orl_algos::{Agent, AlgoKind, Spec, build};
use orl_nets::Device;

use crate::run_dir::RunDir;

/// Metadata key of the observation normalisation: JSON `[[mean...], [std...]]`.
pub const OBS_NORM: &str = "orl.obs_norm";
/// Metadata key of the dataset path.
pub const DATASET: &str = "orl.dataset";
/// Metadata key of the dataset's environment id.
pub const ENV_ID: &str = "orl.env_id";
/// Metadata key of the reference scores `[min, max]`.
pub const REF_SCORES: &str = "orl.ref_scores";

/// Loads the agent saved at `path` (folder or file); returns it with the checkpoint metadata.
pub fn load_agent(path: &Path) -> Result<(Agent, HashMap<String, String>)> {
    let ck = RunDir::resolve_checkpoint(path);
    let (_, meta) = orl_nets::checkpoint::load(&ck, &Device::Cpu)
        .with_context(|| format!("reading {}", ck.display()))?;
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| anyhow!("{}: not an orl checkpoint (no `{k}`)", ck.display()))
    };
    let kind: AlgoKind = get("orl.algo")?.parse()?;
    let spec: Spec = serde_json::from_str(get("orl.spec")?)
        .with_context(|| format!("{}: bad `orl.spec`", ck.display()))?;
    let config: serde_json::Value = serde_json::from_str(get("orl.config")?)?;
    let mut algo = build(kind, spec, Some(&config), 0, &Device::Cpu)?;
    algo.load(&ck)
        .with_context(|| format!("loading {}", ck.display()))?;
    let obs_norm = match meta.get(OBS_NORM) {
        Some(s) => Some(
            serde_json::from_str::<(Vec<f32>, Vec<f32>)>(s)
                .with_context(|| format!("{}: bad `{OBS_NORM}`", ck.display()))?,
        ),
        None => None,
    };
    Ok((Agent::new(algo, obs_norm, Device::Cpu), meta))
}
