//! `orl envs`: the registered environments with their spaces and time limits.

use anyhow::Result;
use orl_envs::{REGISTRY, make};

/// Arguments of `orl envs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Lists every environment; MuJoCo ones are marked when this build lacks the `mujoco` feature.
pub fn run(args: &Args) -> Result<()> {
    let mut rows = Vec::new();
    for spec in REGISTRY {
        let (obs, act) = match make(spec.id) {
            Ok(env) => (
                env.observation_space().describe(),
                env.action_space().describe(),
            ),
            Err(_) => ("(needs --features mujoco)".to_string(), String::new()),
        };
        rows.push((spec.id, spec.max_episode_steps, obs, act));
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(id, steps, obs, act)| {
                serde_json::json!({"id": id, "max_episode_steps": steps,
                    "observation_space": obs, "action_space": act})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<26} {:>10}  {:<40} action space",
        "id", "time limit", "observation space"
    );
    for (id, steps, obs, act) in rows {
        println!("{id:<26} {steps:>10}  {obs:<40} {act}");
    }
    Ok(())
}
