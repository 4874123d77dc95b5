//! Online training loops (behaviour policies): DQN on CartPole-v1 and SAC on Pendulum-v1 run,
//! stay finite, and hand back their whole replay buffer as a valid dataset whose finished
//! episodes are the ones reported.

#![allow(clippy::unwrap_used)]

use orl_algos::{
    Algorithm, Dqn, DqnConfig, OnlineConfig, OnlineEvent, Sac, SacConfig, Spec, train_online,
};
use orl_envs::make;
use orl_nets::Device;

#[test]
fn dqn_on_cartpole_returns_its_buffer() {
    let mut env = make("CartPole-v1").unwrap();
    let mut dqn = Dqn::new(
        Spec::discrete(4, 2),
        DqnConfig {
            hidden: vec![32, 32],
            ..DqnConfig::default()
        },
        0,
        &Device::Cpu,
    )
    .unwrap();
    let cfg = OnlineConfig {
        steps: 1500,
        start_steps: 200,
        batch_size: 32,
        ..OnlineConfig::default()
    };
    let mut seen = Vec::new();
    let r = train_online(&mut dqn, &mut env, &cfg, 0, |e| {
        if let OnlineEvent::Episode { k, ret, .. } = e {
            seen.push((k, ret));
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(r.buffer.len(), 1500);
    assert_eq!(dqn.steps(), 1500 - 200 + 1);
    assert_eq!(seen.len(), r.episode_returns.len());
    let finished: Vec<f64> = r
        .buffer
        .episodes()
        .filter(|e| e.terminal || e.timeout)
        .map(|e| {
            r.buffer.rewards()[e.rows]
                .iter()
                .map(|&x| f64::from(x))
                .sum()
        })
        .collect();
    assert_eq!(finished, r.episode_returns);
    assert!(r.episode_returns.iter().all(|x| x.is_finite() && *x >= 1.0));
}

#[test]
fn sac_on_pendulum_runs_and_is_deterministic() {
    let run = || {
        let mut env = make("Pendulum-v1").unwrap();
        let mut sac = Sac::new(
            Spec::continuous(3, 1, 2.0),
            SacConfig {
                hidden: vec![32, 32],
                ..SacConfig::default()
            },
            1,
            &Device::Cpu,
        )
        .unwrap();
        let cfg = OnlineConfig {
            steps: 500,
            start_steps: 100,
            batch_size: 32,
            ..OnlineConfig::default()
        };
        let r = train_online(&mut sac, &mut env, &cfg, 1, |_| Ok(())).unwrap();
        assert_eq!(r.buffer.len(), 500);
        assert_eq!(
            r.episode_returns.len(),
            2,
            "two 200-step episodes finish in 500 steps"
        );
        r.buffer.rewards().to_vec()
    };
    assert_eq!(run(), run());
}
