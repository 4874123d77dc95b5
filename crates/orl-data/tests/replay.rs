//! Replay sampling: determinism, which rows are sampleable, the weighted strategies' probabilities,
//! n-step returns, reward scaling, observation normalisation, and the memory budget of `open`.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use orl_data::{
    ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace, Replay, ReplayConfig,
    RewardTransform, Sampling, WriteOptions, write_parquet,
};

/// Episodes of given lengths; rewards per row from `reward(episode, step)`; observation = [row, episode].
fn build(
    lens: &[usize],
    reward: impl Fn(usize, usize) -> f32,
    ends: &[(bool, bool, bool)],
) -> Dataset {
    let n: usize = lens.iter().sum();
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: 2,
            low: None,
            high: None,
        },
        ActionSpace::Continuous {
            dim: 1,
            low: None,
            high: None,
        },
    );
    let mut obs = Vec::new();
    let mut next = Vec::new();
    let mut next_valid = vec![true; n];
    let mut rewards = Vec::new();
    let mut terminals = vec![false; n];
    let mut timeouts = vec![false; n];
    let mut row = 0;
    let mut episodes = Vec::new();
    for (k, &len) in lens.iter().enumerate() {
        for t in 0..len {
            obs.extend([row as f32, k as f32]);
            next.extend([(row + 1) as f32, k as f32]);
            rewards.push(reward(k, t));
            row += 1;
        }
        let (term, tout, missing_next) = ends[k];
        terminals[row - 1] = term;
        timeouts[row - 1] = tout;
        if missing_next {
            next_valid[row - 1] = false;
            next[(row - 1) * 2..row * 2].fill(0.0);
        }
        episodes.push((k as i64, len));
    }
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: Some(next_valid),
        actions: Actions::Continuous {
            dim: 1,
            values: vec![0.0; n],
        },
        rewards,
        terminals,
        timeouts,
        behavior_log_prob: None,
    };
    Dataset::new(meta, cols, &episodes).unwrap()
}

fn counts_by_episode(replay: &mut Replay, draws: usize, episodes: usize) -> Vec<usize> {
    let mut c = vec![0; episodes];
    for _ in 0..draws / 256 {
        let b = replay.sample(256);
        for i in 0..256 {
            c[b.observations[i * 2 + 1] as usize] += 1;
        }
    }
    c
}

#[test]
fn same_seed_same_batches_other_seed_other_batches() {
    let ds = build(
        &[50, 30],
        |_, t| t as f32,
        &[(true, false, false), (false, true, false)],
    );
    let mut a = Replay::new(ds.clone(), ReplayConfig::default(), 7).unwrap();
    let mut b = Replay::new(ds.clone(), ReplayConfig::default(), 7).unwrap();
    let mut c = Replay::new(ds, ReplayConfig::default(), 8).unwrap();
    let (x, y, z) = (a.sample(64), b.sample(64), c.sample(64));
    assert_eq!(x, y);
    assert_ne!(x.indices, z.indices);
}

#[test]
fn rows_without_next_observation_are_never_sampled_unless_terminal() {
    // Episode 0 ends terminal with unknown s' (sampleable), episode 1 is cut with unknown s' (not sampleable).
    let ds = build(
        &[5, 5],
        |_, _| 1.0,
        &[(true, false, true), (false, true, true)],
    );
    let mut r = Replay::new(ds, ReplayConfig::default(), 1).unwrap();
    assert_eq!(r.num_sampleable(), 9);
    let mut seen = [0usize; 10];
    for _ in 0..200 {
        for &i in &r.sample(64).indices {
            seen[i] += 1;
        }
    }
    assert_eq!(seen[9], 0, "row 9 has no s' and is not terminal");
    assert!(seen[4] > 0, "row 4 is terminal and must be sampled");
    assert!(seen.iter().take(9).all(|&c| c > 0));
}

#[test]
fn uniform_sampling_is_uniform() {
    let ds = build(
        &[10, 990],
        |_, _| 0.0,
        &[(true, false, false), (true, false, false)],
    );
    let mut r = Replay::new(ds, ReplayConfig::default(), 3).unwrap();
    let c = counts_by_episode(&mut r, 256 * 400, 2);
    let p = c[0] as f64 / (c[0] + c[1]) as f64;
    // Expected 0.01; 102400 draws give a standard error of 3.1e-4.
    assert!((p - 0.01).abs() < 0.002, "p = {p}");
}

#[test]
fn stratified_sampling_gives_each_return_stratum_equal_mass() {
    // One short good episode drowned by a long poor one.
    let ds = build(
        &[10, 990],
        |k, _| if k == 0 { 10.0 } else { 0.0 },
        &[(true, false, false), (true, false, false)],
    );
    let cfg = ReplayConfig {
        sampling: Sampling::StratifiedByReturn { bins: 2 },
        ..Default::default()
    };
    let mut r = Replay::new(ds, cfg, 3).unwrap();
    let c = counts_by_episode(&mut r, 256 * 200, 2);
    let p = c[0] as f64 / (c[0] + c[1]) as f64;
    assert!((p - 0.5).abs() < 0.02, "p = {p}");
}

#[test]
fn return_weighted_sampling_follows_its_formula() {
    // Equal lengths, returns 0 and 10, temperature 1: p(best)/p(worst) = exp((10-0)/(1*10)) = e.
    let ds = build(
        &[100, 100],
        |k, _| if k == 1 { 0.1 } else { 0.0 },
        &[(true, false, false), (true, false, false)],
    );
    let cfg = ReplayConfig {
        sampling: Sampling::ReturnWeighted { temperature: 1.0 },
        ..Default::default()
    };
    let mut r = Replay::new(ds, cfg, 5).unwrap();
    let c = counts_by_episode(&mut r, 256 * 400, 2);
    let p = c[1] as f64 / (c[0] + c[1]) as f64;
    let expected = std::f64::consts::E / (1.0 + std::f64::consts::E);
    assert!((p - expected).abs() < 0.01, "p = {p}, expected {expected}");
}

#[test]
fn n_step_returns_stop_at_terminals_and_discount_correctly() {
    // Rewards 1, 2, 3, 4 then terminal; gamma 0.5, n = 3.
    let ds = build(&[4], |_, t| (t + 1) as f32, &[(true, false, false)]);
    let cfg = ReplayConfig {
        n_step: 3,
        gamma: 0.5,
        ..Default::default()
    };
    let mut r = Replay::new(ds, cfg, 0).unwrap();
    let b = r.sample(200);
    for k in 0..200 {
        let i = b.indices[k];
        let (exp_r, steps) = match i {
            0 => (1.0 + 0.5 * 2.0 + 0.25 * 3.0, 3),
            1 => (2.0 + 0.5 * 3.0 + 0.25 * 4.0, 3),
            2 => (3.0 + 0.5 * 4.0, 2),
            3 => (4.0, 1),
            _ => unreachable!(),
        };
        assert_eq!(b.rewards[k], exp_r, "row {i}");
        assert_eq!(b.discounts[k], 0.5f32.powi(steps), "row {i}");
        let last = i + steps as usize - 1;
        assert_eq!(b.terminals[k], if last == 3 { 1.0 } else { 0.0 });
        assert_eq!(
            b.next_observations[k * 2],
            (last + 1) as f32,
            "s' is the last summed row's"
        );
    }
}

#[test]
fn n_step_does_not_cross_episodes() {
    let ds = build(
        &[2, 2],
        |k, _| if k == 0 { 1.0 } else { 100.0 },
        &[(false, true, false), (false, true, false)],
    );
    let cfg = ReplayConfig {
        n_step: 5,
        gamma: 1.0,
        ..Default::default()
    };
    let mut r = Replay::new(ds, cfg, 0).unwrap();
    let b = r.sample(100);
    for k in 0..100 {
        if b.indices[k] < 2 {
            assert!(
                b.rewards[k] <= 2.0,
                "summed rewards of the next episode: {}",
                b.rewards[k]
            );
            assert_eq!(b.timeouts[k], 1.0);
            assert_eq!(b.terminals[k], 0.0);
        }
    }
}

#[test]
fn return_range_reward_scaling_matches_iql() {
    // Complete episodes with returns 10 and 30; the unterminated third one is left out of the range.
    let ds = build(
        &[10, 10, 5],
        |k, _| [1.0, 3.0, 100.0][k],
        &[
            (true, false, false),
            (false, true, false),
            (false, false, false),
        ],
    );
    let cfg = ReplayConfig {
        reward_transform: RewardTransform::ReturnRange {
            max_episode_steps: 1000.0,
        },
        ..Default::default()
    };
    let mut r = Replay::new(ds, cfg, 0).unwrap();
    assert_eq!(r.reward_scale(), 1000.0 / 20.0);
    let b = r.sample(50);
    for k in 0..50 {
        let ep = b.observations[k * 2 + 1] as usize;
        assert_eq!(b.rewards[k], [1.0, 3.0, 100.0][ep] * 50.0);
    }
}

#[test]
fn observation_normalisation_uses_dataset_mean_and_std() {
    let ds = build(&[4], |_, _| 0.0, &[(true, false, false)]);
    // Observation dim 0 takes 0, 1, 2, 3: mean 1.5, population std sqrt(1.25).
    let cfg = ReplayConfig {
        normalize_observations: true,
        ..Default::default()
    };
    let mut r = Replay::new(ds, cfg, 0).unwrap();
    let st = r.obs_stats().unwrap().clone();
    assert!((st.mean[0] - 1.5).abs() < 1e-6 && (st.std[0] - (1.25f32.sqrt() + 1e-3)).abs() < 1e-6);
    let b = r.sample(16);
    for k in 0..16 {
        let raw = b.indices[k] as f32;
        assert!((b.observations[k * 2] - (raw - 1.5) / st.std[0]).abs() < 1e-6);
    }
}

#[test]
fn invalid_configs_are_errors() {
    let ds = build(&[3], |_, _| 0.0, &[(true, false, false)]);
    for cfg in [
        ReplayConfig {
            n_step: 0,
            ..Default::default()
        },
        ReplayConfig {
            gamma: 1.5,
            ..Default::default()
        },
        ReplayConfig {
            sampling: Sampling::ReturnWeighted { temperature: 0.0 },
            ..Default::default()
        },
        ReplayConfig {
            sampling: Sampling::StratifiedByReturn { bins: 0 },
            ..Default::default()
        },
        ReplayConfig {
            reward_transform: RewardTransform::ReturnRange {
                max_episode_steps: 1000.0,
            },
            ..Default::default()
        },
    ] {
        assert!(Replay::new(ds.clone(), cfg.clone(), 0).is_err(), "{cfg:?}");
    }
}

#[test]
fn open_uses_at_most_1_2x_the_raw_array_bytes() {
    let n = 100_000;
    let (od, ad) = (17, 6);
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: od,
            low: None,
            high: None,
        },
        ActionSpace::Continuous {
            dim: ad,
            low: None,
            high: None,
        },
    );
    let cols = Columns {
        observations: (0..n * od).map(|i| (i % 1000) as f32).collect(),
        next_observations: (0..n * od).map(|i| (i % 999) as f32).collect(),
        next_valid: None,
        actions: Actions::Continuous {
            dim: ad,
            values: vec![0.25; n * ad],
        },
        rewards: vec![1.0; n],
        terminals: vec![false; n],
        timeouts: (0..n).map(|i| i % 1000 == 999).collect(),
        behavior_log_prob: Some(vec![-1.0; n]),
    };
    let ds = Dataset::new(meta, cols, &(0..100).map(|k| (k, 1000)).collect::<Vec<_>>()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.parquet");
    write_parquet(&ds, &p, &WriteOptions::default()).unwrap();
    let back = Dataset::open(&p).unwrap();
    // Raw bytes of the stored arrays, counting episode_id and step as the file does.
    let raw = n * (8 + 8 + 4 * od * 2 + 4 * ad + 4 + 1 + 1 + 8);
    let held = back.heap_bytes();
    assert!(
        held as f64 <= 1.2 * raw as f64,
        "held {held} bytes for {raw} raw bytes"
    );
    // Even without crediting the folded episode_id/step columns, the buffers are exact.
    let raw_without_ids = raw - n * 16;
    assert!(
        held as f64 <= 1.01 * raw_without_ids as f64,
        "held {held} bytes, columns need {raw_without_ids}"
    );
}

#[test]
fn a_directory_of_files_loads_as_one_dataset_and_streams_the_same_rows() {
    let a = build(
        &[3, 4],
        |k, t| (k * 10 + t) as f32,
        &[(true, false, false), (false, true, false)],
    );
    // Same spaces, other episode ids.
    let (meta, cols, _) = build(&[5], |_, t| t as f32, &[(false, false, false)]).into_parts();
    let b = Dataset::new(meta, cols, &[(9, 5)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_parquet(
        &a,
        &dir.path().join("part-0.parquet"),
        &WriteOptions::default(),
    )
    .unwrap();
    write_parquet(
        &b,
        &dir.path().join("part-1.parquet"),
        &WriteOptions {
            row_group_size: 2,
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), "ignored").unwrap();
    let all = Dataset::open(dir.path()).unwrap();
    assert_eq!(
        all,
        Dataset::concat(vec![a.clone(), b.clone()], false).unwrap()
    );
    assert_eq!(all.episode_lengths_with_ids(), vec![(0, 3), (1, 4), (9, 5)]);

    let reader = orl_data::DatasetReader::with_batch_size(dir.path(), 3).unwrap();
    assert_eq!(reader.num_rows(), 12);
    let mut ids = Vec::new();
    let mut rewards = Vec::new();
    for chunk in reader {
        let chunk = chunk.unwrap();
        assert!(chunk.episode_id.len() <= 3);
        ids.extend(chunk.episode_id);
        rewards.extend(chunk.columns.rewards);
    }
    assert_eq!(ids, vec![0, 0, 0, 1, 1, 1, 1, 9, 9, 9, 9, 9]);
    assert_eq!(rewards, all.rewards());

    // A file whose spaces differ from the first is refused, naming it.
    let (meta, cols, eps) = build(&[2], |_, _| 0.0, &[(true, false, false)]).into_parts();
    let mut meta = meta;
    meta.action_space = ActionSpace::Continuous {
        dim: 1,
        low: Some(vec![-2.0]),
        high: Some(vec![2.0]),
    };
    let c = Dataset::new(meta, cols, &[(eps[0].0 + 100, eps[0].1)]).unwrap();
    write_parquet(
        &c,
        &dir.path().join("part-2.parquet"),
        &WriteOptions::default(),
    )
    .unwrap();
    let err = Dataset::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("part-2.parquet"), "{err}");
}

#[test]
fn parquet_without_orl_metadata_is_refused_with_a_clear_error() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("foreign.parquet");
    let schema = Arc::new(arrow::datatypes::Schema::new(vec![
        arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, false),
    ]));
    let batch = arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
    )
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let err = Dataset::open(&p).unwrap_err().to_string();
    assert!(
        err.contains("foreign.parquet") && err.contains("orl.format_version"),
        "{err}"
    );
}
