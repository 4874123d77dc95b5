//! Loading a trained agent from a checkpoint (a run folder or a `.safetensors` file), with the
//! recipe it was trained by.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use orl_algos::{Agent, Recipe};
use orl_nets::Device;

use orl_app::RunDir;

pub use orl_algos::keys::{ENV_ID, REF_SCORES};

/// The agent saved at `path` (folder or file), its recipe (checkpoints of `orl train` hold one)
/// and the checkpoint metadata.
pub fn load_agent_with_recipe(
    path: &Path,
) -> Result<(Agent, Option<Recipe>, HashMap<String, String>)> {
    let ck = RunDir::resolve_checkpoint(path);
    Agent::from_checkpoint(&ck, &Device::Cpu).with_context(|| format!("loading {}", ck.display()))
}

/// The agent saved at `path` (folder or file) with the checkpoint metadata.
pub fn load_agent(path: &Path) -> Result<(Agent, HashMap<String, String>)> {
    let (a, _, m) = load_agent_with_recipe(path)?;
    Ok((a, m))
}
