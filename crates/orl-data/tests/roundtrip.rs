//! Property tests: random datasets (random dims, discrete or continuous actions, random episode
//! splits and endings, missing next observations, optional log-probs, awkward floats such as
//! -0.0 and subnormals) survive Parquet write -> read, D4RL HDF5 export -> import and npz
//! export -> import bit for bit.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use orl_data::convert::{self, OutputFormat};
use orl_data::{
    ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace, WriteOptions,
    write_parquet,
};
use proptest::prelude::*;

fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -10.0f32..10.0,
        1 => prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO,
        1 => Just(-0.0f32),
    ]
}

#[derive(Debug, Clone, Copy)]
enum End {
    Terminal,
    Timeout,
    Open,
}

fn dataset() -> impl Strategy<Value = Dataset> {
    let shape = (
        1usize..7,
        prop::option::of(2usize..6),
        1usize..4,
        prop::collection::vec((1usize..25, 0u8..3, any::<bool>()), 1..7),
        any::<bool>(),
        0u16..10,
    );
    shape
        .prop_flat_map(|(od, discrete_n, ad, eps, with_lp, row_groups)| {
            let n: usize = eps.iter().map(|e| e.0).sum();
            let width = if discrete_n.is_some() { 1 } else { ad };
            (
                prop::collection::vec(finite_f32(), n * od),
                prop::collection::vec(finite_f32(), n * od),
                prop::collection::vec(finite_f32(), n * width),
                prop::collection::vec(0i64..discrete_n.unwrap_or(1) as i64, n),
                prop::collection::vec(finite_f32(), n),
                prop::collection::vec(-50.0f64..0.0, n),
                Just((od, discrete_n, ad, eps, with_lp, row_groups)),
            )
        })
        .prop_map(
            |(obs, mut next, act, dact, rew, lp, (od, discrete_n, ad, eps, with_lp, _))| {
                let n = rew.len();
                let mut terminals = vec![false; n];
                let mut timeouts = vec![false; n];
                let mut next_valid = vec![true; n];
                let mut episodes = Vec::new();
                let mut start = 0;
                for (k, (len, end, next_missing)) in eps.iter().enumerate() {
                    let last = start + len - 1;
                    match [End::Terminal, End::Timeout, End::Open][*end as usize] {
                        End::Terminal => terminals[last] = true,
                        End::Timeout => timeouts[last] = true,
                        End::Open => {}
                    }
                    if *next_missing {
                        next_valid[last] = false;
                        next[last * od..(last + 1) * od].fill(0.0);
                    }
                    // Non-contiguous, non-sorted ids exercise the episode table.
                    episodes.push(((k as i64) * 7 - 3, *len));
                    start += len;
                }
                let (space, actions) = match discrete_n {
                    Some(na) => (ActionSpace::Discrete { n: na }, Actions::Discrete(dact)),
                    None => (
                        ActionSpace::Continuous {
                            dim: ad,
                            low: Some(vec![-1.0; ad]),
                            high: Some(vec![1.0; ad]),
                        },
                        Actions::Continuous {
                            dim: ad,
                            values: act,
                        },
                    ),
                };
                let mut meta = DatasetMeta::new(
                    ObservationSpace {
                        dim: od,
                        low: Some(vec![f64::NEG_INFINITY; od]),
                        high: Some(vec![f64::INFINITY; od]),
                    },
                    space,
                );
                meta.env_id = Some("Test-v0".into());
                meta.seed = Some(17);
                let cols = Columns {
                    observations: obs,
                    next_observations: next,
                    next_valid: next_valid.iter().any(|v| !v).then_some(next_valid),
                    actions,
                    rewards: rew,
                    terminals,
                    timeouts,
                    behavior_log_prob: with_lp.then_some(lp),
                };
                Dataset::new(meta, cols, &episodes).expect("generated dataset is valid")
            },
        )
}

/// Bitwise equality of every column, the episode table and the metadata.
fn assert_bits_eq(a: &Dataset, b: &Dataset) {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (ca, cb) = (a.columns(), b.columns());
    assert_eq!(
        bits(&ca.observations),
        bits(&cb.observations),
        "observations"
    );
    assert_eq!(
        bits(&ca.next_observations),
        bits(&cb.next_observations),
        "next_observations"
    );
    assert_eq!(ca.next_valid, cb.next_valid, "next_valid");
    match (&ca.actions, &cb.actions) {
        (
            Actions::Continuous { dim, values },
            Actions::Continuous {
                dim: d2,
                values: v2,
            },
        ) => {
            assert_eq!(dim, d2);
            assert_eq!(bits(values), bits(v2), "actions");
        }
        (Actions::Discrete(x), Actions::Discrete(y)) => assert_eq!(x, y, "actions"),
        _ => panic!("action kinds differ"),
    }
    assert_eq!(bits(&ca.rewards), bits(&cb.rewards), "rewards");
    assert_eq!(ca.terminals, cb.terminals);
    assert_eq!(ca.timeouts, cb.timeouts);
    assert_eq!(
        ca.behavior_log_prob
            .as_ref()
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        cb.behavior_log_prob
            .as_ref()
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
    );
    assert_eq!(
        a.episode_lengths_with_ids(),
        b.episode_lengths_with_ids(),
        "episodes"
    );
    assert_eq!(a.meta(), b.meta(), "metadata");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn parquet_roundtrip(ds in dataset(), rows_per_group in 1usize..40) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        write_parquet(&ds, &p, &WriteOptions { row_group_size: rows_per_group, ..WriteOptions::default() }).unwrap();
        let back = Dataset::open(&p).unwrap();
        assert_bits_eq(&ds, &back);
        // The streaming reader yields the same rows.
        let mut rows = 0;
        for chunk in orl_data::DatasetReader::with_batch_size(&p, 7).unwrap() {
            rows += chunk.unwrap().episode_id.len();
        }
        prop_assert_eq!(rows, ds.len());
    }

    #[test]
    fn d4rl_hdf5_roundtrip(ds in dataset()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.hdf5");
        convert::write(&ds, &p, OutputFormat::D4rlHdf5).unwrap();
        assert_bits_eq(&ds, &convert::d4rl::read(&p).unwrap());
    }

    #[test]
    fn npz_roundtrip(ds in dataset()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npz");
        convert::write(&ds, &p, OutputFormat::Npz).unwrap();
        assert_bits_eq(&ds, &convert::npz::read(&p).unwrap());
    }
}

/// Without orl's extension keys, a D4RL reader still recovers the episodes from the flags alone
/// when every episode ends in a flag (the D4RL convention), plus D4RL's trailing cut episode.
#[test]
fn d4rl_split_from_flags_only() {
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: 1,
            low: None,
            high: None,
        },
        ActionSpace::Continuous {
            dim: 1,
            low: None,
            high: None,
        },
    );
    let n = 7;
    let cols = Columns {
        observations: (0..n).map(|i| i as f32).collect(),
        next_observations: (1..=n).map(|i| i as f32).collect(),
        next_valid: None,
        actions: Actions::Continuous {
            dim: 1,
            values: vec![0.0; n],
        },
        rewards: vec![1.0; n],
        terminals: vec![false, true, false, false, false, false, false],
        timeouts: vec![false, false, false, true, false, false, false],
        behavior_log_prob: None,
    };
    let ds = Dataset::new(meta, cols, &[(0, 2), (1, 2), (2, 3)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain.npz");
    // Write only D4RL's own keys.
    let c = ds.columns();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    use orl_data::convert::npz::{NpyData, encode_npy};
    use std::io::Write;
    for (name, shape, data) in [
        (
            "observations",
            vec![n, 1],
            NpyData::F32(c.observations.clone()),
        ),
        ("actions", vec![n, 1], NpyData::F32(vec![0.0; n])),
        ("rewards", vec![n], NpyData::F32(c.rewards.clone())),
        ("terminals", vec![n], NpyData::Bool(c.terminals.clone())),
        ("timeouts", vec![n], NpyData::Bool(c.timeouts.clone())),
    ] {
        zip.start_file(format!("{name}.npy"), opts).unwrap();
        zip.write_all(&encode_npy(&shape, &data)).unwrap();
    }
    zip.finish().unwrap();
    let back = convert::npz::read(&p).unwrap();
    assert_eq!(
        back.episode_lengths_with_ids()
            .iter()
            .map(|e| e.1)
            .collect::<Vec<_>>(),
        vec![2, 2, 3]
    );
    let eps: Vec<_> = back.episodes().collect();
    assert!(eps[0].terminal && eps[1].timeout && eps[2].is_unterminated());
    // No next_observations key: s' comes from the next row inside episodes, unknown at episode ends.
    assert_eq!(back.next_observations()[0], 1.0);
    assert!(
        !back.next_valid(1) && !back.next_valid(3) && !back.next_valid(6) && back.next_valid(5)
    );
}
