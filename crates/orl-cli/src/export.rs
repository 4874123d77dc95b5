//! `orl export`: write a trained policy as one safetensors MLP with a JSON header, observation
//! normalisation folded into the first layer (loadable with `orl_nets::ExportedPolicy`).

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use orl_algos::ActionSpec;
use orl_nets::{EXPORT_FORMAT_VERSION, ExportHeader, save_export};

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
    let mut mlp = agent.algo.policy_mlp()?.ok_or_else(|| {
        anyhow!("{}'s policy is not a plain network (it samples from a VAE and maximises a critic); export is not supported", agent.algo.name())
    })?;
    if let Some((mean, std)) = &agent.obs_norm {
        mlp.fold_normalization(mean, std)?;
    }
    let spec = agent.algo.spec();
    let header = ExportHeader {
        format_version: EXPORT_FORMAT_VERSION.into(),
        algo: agent.algo.name().into(),
        obs_dim: spec.obs_dim,
        head: mlp.head,
        max_action: match spec.action {
            ActionSpec::Continuous { max_action, .. } => max_action,
            ActionSpec::Discrete { .. } => 0.0,
        },
        n_actions: match spec.action {
            ActionSpec::Discrete { n } => n,
            ActionSpec::Continuous { .. } => 0,
        },
        source: args.checkpoint.display().to_string(),
    };
    save_export(&args.out, &mlp, &header)?;
    println!(
        "wrote {} ({} layers, {} head)",
        args.out.display(),
        mlp.layers.len(),
        if spec.is_discrete() { "argmax" } else { "tanh" }
    );
    Ok(())
}
