//! `orl inspect DATASET [--json] [--plot FILE]`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use orl_data::Report;
use orl_data::convert::{self, ConvertOptions, Format};

/// Arguments of `orl inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset: orl Parquet, or any format `orl convert` reads.
    pub dataset: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also draw the return and action histograms to this .png or .svg file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Input format (auto-detected by default).
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Load datasets holding NaN/inf (they are counted in the report).
    #[arg(long)]
    pub allow_nonfinite: bool,
}

/// Prints the report.
pub fn run(a: &Args) -> Result<()> {
    let opts = ConvertOptions {
        allow_nonfinite: a.allow_nonfinite,
        ..Default::default()
    };
    let ds = convert::read(&a.dataset, a.format, &opts)?;
    let report = Report::new(&ds);
    if a.json {
        let doc = serde_json::json!({
            "dataset": a.dataset.display().to_string(),
            "metadata": ds.meta(),
            "report": report,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).context("serialising the report")?
        );
    } else {
        println!("dataset          {}", a.dataset.display());
        println!("{report}");
        for note in &ds.meta().provenance.notes {
            println!("note: {note}");
        }
    }
    if let Some(p) = &a.plot {
        orl_app::plot::draw(&report, p)?;
        if !a.json {
            println!("plot written to {}", p.display());
        }
    }
    Ok(())
}
