//! Does the online loop learn? `cargo run --release -p orl-benches --example online_check -- dqn|sac STEPS`:
//! DQN on CartPole-v1 or SAC on Pendulum-v1 (64x64 networks); prints the mean return of the
//! first and last ten episodes.

use orl_algos::{Algorithm, Dqn, DqnConfig, OnlineConfig, Sac, SacConfig, Spec, train_online};
use orl_envs::make;
use orl_nets::Device;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("dqn");
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let (mut env, mut algo): (_, Box<dyn Algorithm>) = match which {
        "sac" => (
            make("Pendulum-v1").expect("env"),
            Box::new(
                Sac::new(
                    Spec::continuous(3, 1, 2.0),
                    SacConfig {
                        hidden: vec![64, 64],
                        ..SacConfig::default()
                    },
                    0,
                    &Device::Cpu,
                )
                .expect("sac"),
            ),
        ),
        _ => (
            make("CartPole-v1").expect("env"),
            Box::new(
                Dqn::new(
                    Spec::discrete(4, 2),
                    DqnConfig {
                        hidden: vec![64, 64],
                        lr: std::env::var("LR")
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(DqnConfig::default().lr),
                        target_update_interval: std::env::var("TUI")
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(DqnConfig::default().target_update_interval),
                        ..DqnConfig::default()
                    },
                    0,
                    &Device::Cpu,
                )
                .expect("dqn"),
            ),
        ),
    };
    let cfg = OnlineConfig {
        steps,
        batch_size: 64,
        ..OnlineConfig::default()
    };
    let r = train_online(&mut *algo, &mut env, &cfg, 0, |_| Ok(())).expect("train");
    let m = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let n = r.episode_returns.len();
    println!(
        "{which}: {n} episodes; first 10 mean {:.1}, last 10 mean {:.1}",
        m(&r.episode_returns[..n.min(10)]),
        m(&r.episode_returns[n.saturating_sub(10)..])
    );
}
