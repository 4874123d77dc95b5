//! Online training loops (behaviour policies): DQN on CartPole-v1 and SAC on Pendulum-v1 run,
//! stay finite, and hand back their whole replay buffer as a valid dataset whose finished
//! episodes are the ones reported.

#![allow(clippy::unwrap_used)]

mod common;

use orl_algos::{
    Algorithm, Dqn, DqnConfig, OnlineCheckpoint, OnlineConfig, OnlineEvent, Sac, SacConfig, Spec,
    train_online, train_online_resumable,
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

/// A run stopped by an error after a checkpoint and continued by a second call ends with the
/// same buffer, episode returns and networks as one uninterrupted run; a checkpoint of another
/// run is refused.
fn resumed_run_matches_uninterrupted(
    env_id: &str,
    new_algo: &dyn Fn() -> Box<dyn Algorithm>,
    cfg: &OnlineConfig,
    every: usize,
    stop_at: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let ck = OnlineCheckpoint {
        path: dir.path().join("run.safetensors"),
        every,
        fingerprint: "recipe-a".into(),
    };
    let probe = candle_core::Tensor::zeros(
        (1, make(env_id).unwrap().observation_space().dim()),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let finish = |algo: &mut dyn Algorithm, r: orl_algos::OnlineReport| {
        let a = common::greedy_actions(algo, &probe);
        (r.buffer, r.episode_returns, algo.steps(), a)
    };

    let mut algo = new_algo();
    let mut env = make(env_id).unwrap();
    let r = train_online(&mut *algo, &mut *env, cfg, 3, |_| Ok(())).unwrap();
    let whole = finish(&mut *algo, r);

    let mut algo = new_algo();
    let mut env = make(env_id).unwrap();
    let err = train_online_resumable(&mut *algo, &mut *env, cfg, 3, Some(&ck), |e| match e {
        OnlineEvent::Step { step, .. } if step == stop_at => {
            Err(orl_algos::AlgoError::Config("interrupted".into()))
        }
        _ => Ok(()),
    });
    assert!(err.is_err());
    assert!(ck.path.exists(), "no checkpoint before step {stop_at}");
    let algo_files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("run.algo-")
        })
        .count();
    assert_eq!(algo_files, 1, "older algorithm checkpoints are removed");

    let other = OnlineCheckpoint {
        fingerprint: "recipe-b".into(),
        ..ck.clone()
    };
    let mut algo = new_algo();
    let mut env = make(env_id).unwrap();
    let e = train_online_resumable(&mut *algo, &mut *env, cfg, 3, Some(&other), |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another run") && e.contains("run.safetensors"),
        "{e}"
    );

    let mut algo = new_algo();
    let mut env = make(env_id).unwrap();
    let mut first_step = None;
    let r = train_online_resumable(&mut *algo, &mut *env, cfg, 3, Some(&ck), |e| {
        if let OnlineEvent::Step { step, .. } = e {
            first_step.get_or_insert(step);
        }
        Ok(())
    })
    .unwrap();
    assert!(
        first_step.is_some_and(|s| s > 1 && s <= stop_at),
        "resumed at {first_step:?}"
    );
    let resumed = finish(&mut *algo, r);
    assert_eq!(resumed.0, whole.0, "buffer");
    assert_eq!(resumed.1, whole.1, "episode returns");
    assert_eq!(resumed.2, whole.2, "updates");
    assert_eq!(resumed.3, whole.3, "greedy action after training");
}

#[test]
fn dqn_run_resumes_bit_for_bit() {
    let cfg = OnlineConfig {
        steps: 900,
        start_steps: 100,
        batch_size: 16,
        ..OnlineConfig::default()
    };
    let new = || -> Box<dyn Algorithm> {
        Box::new(
            Dqn::new(
                Spec::discrete(4, 2),
                DqnConfig {
                    hidden: vec![16, 16],
                    ..DqnConfig::default()
                },
                0,
                &Device::Cpu,
            )
            .unwrap(),
        )
    };
    resumed_run_matches_uninterrupted("CartPole-v1", &new, &cfg, 150, 700);
}

#[test]
fn sac_run_resumes_bit_for_bit() {
    let cfg = OnlineConfig {
        steps: 500,
        start_steps: 100,
        batch_size: 16,
        ..OnlineConfig::default()
    };
    let new = || -> Box<dyn Algorithm> {
        Box::new(
            Sac::new(
                Spec::continuous(3, 1, 2.0),
                SacConfig {
                    hidden: vec![16, 16],
                    ..SacConfig::default()
                },
                1,
                &Device::Cpu,
            )
            .unwrap(),
        )
    };
    // Pendulum's episodes are 200 steps: a checkpoint at step 200, stopped at 350.
    resumed_run_matches_uninterrupted("Pendulum-v1", &new, &cfg, 150, 350);
}
