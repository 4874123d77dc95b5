//! `orl export`: write a trained policy's acting networks as one safetensors file of plain MLPs
//! with a JSON header (format in `orl_nets::export`), observation normalisation folded into the
//! first layers (loadable with `orl_nets::ExportedPolicy`).

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use orl_algos::ActionSpec;
use orl_nets::{ExportHeader, save_export};

use crate::agent_io::load_agent;

/// Arguments of `orl export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run folder or checkpoint file.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Output `.safetensors` file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `orl export`.
pub fn run(args: &Args) -> Result<()> {
    let (agent, _) = load_agent(&args.checkpoint)?;
    let mut model = agent.algo.policy_model()?.ok_or_else(|| {
        anyhow!(
            "{}'s policy cannot be exported (only the offline algorithms' and the behaviour policies' can)",
            agent.algo.name()
        )
    })?;
    if let Some((mean, std)) = &agent.obs_norm {
        model.fold_normalization(mean, std)?;
    }
    let spec = agent.algo.spec();
    let n_actions = match spec.action {
        ActionSpec::Discrete { n } => n,
        ActionSpec::Continuous { .. } => 0,
    };
    let header = ExportHeader::for_model(
        &model,
        agent.algo.name(),
        spec.obs_dim,
        n_actions,
        &args.checkpoint.display().to_string(),
    );
    save_export(&args.out, &model, &header)?;
    println!(
        "wrote {} ({} layers, {:?} head)",
        args.out.display(),
        model.layer_count(),
        model.head()
    );
    Ok(())
}
