//! `orl convert INPUT OUTPUT [--format ...]`.

use std::path::PathBuf;

use anyhow::Result;
use orl_data::convert::{self, ConvertOptions, Format};

/// Arguments of `orl convert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input: D4RL/d3rlpy HDF5, a Minari dataset directory, .npz, or orl Parquet (file or directory).
    pub input: PathBuf,
    /// Output file: .parquet (orl format), .hdf5/.h5 (D4RL layout) or .npz (D4RL keys).
    pub output: PathBuf,
    /// Format of the non-Parquet side: the input's when writing Parquet (auto, d4rl, minari, d3rlpy, npz),
    /// the output's when the input is Parquet (d4rl, npz).
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Keep NaN/inf values instead of failing.
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// Set the environment id recorded in the metadata (e.g. Hopper-v5).
    #[arg(long)]
    pub env_id: Option<String>,
    /// Reference return of a random policy, for normalized scores.
    #[arg(long, requires = "ref_max")]
    pub ref_min: Option<f64>,
    /// Reference return of an expert policy, for normalized scores.
    #[arg(long, requires = "ref_min")]
    pub ref_max: Option<f64>,
}

/// Runs the conversion.
pub fn run(a: &Args) -> Result<()> {
    let opts = ConvertOptions {
        allow_nonfinite: a.allow_nonfinite,
        env_id: a.env_id.clone(),
        ref_min_score: a.ref_min,
        ref_max_score: a.ref_max,
    };
    let ds = convert::convert(&a.input, &a.output, a.format, &opts)?;
    let m = ds.meta();
    println!(
        "wrote {} transitions in {} episodes ({}, obs_dim {}, {}) to {}",
        ds.len(),
        ds.num_episodes(),
        m.env_id.as_deref().unwrap_or("unknown env"),
        ds.obs_dim(),
        match &m.action_space {
            orl_data::ActionSpace::Continuous { dim, .. } =>
                format!("continuous actions, dim {dim}"),
            orl_data::ActionSpace::Discrete { n } => format!("{n} discrete actions"),
        },
        a.output.display()
    );
    for note in &m.provenance.notes {
        println!("note: {note}");
    }
    Ok(())
}
