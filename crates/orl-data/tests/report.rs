//! The dataset report's data-quality verdicts.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace, Report};

/// Two episodes of 5 rows with the given rewards; the last row of each is terminal when
/// `terminal`, else a timeout.
fn two_episodes(rewards: [f32; 10], terminal: bool) -> Dataset {
    let meta = DatasetMeta::new(
        ObservationSpace {
            dim: 1,
            low: None,
            high: None,
        },
        ActionSpace::Discrete { n: 3 },
    );
    let ends = |row: usize| row % 5 == 4;
    let cols = Columns {
        observations: (0..10).map(|i| i as f32).collect(),
        next_observations: (1..11).map(|i| i as f32).collect(),
        next_valid: None,
        actions: Actions::Discrete((0..10).map(|i| i % 3).collect()),
        rewards: rewards.to_vec(),
        terminals: (0..10).map(|i| terminal && ends(i)).collect(),
        timeouts: (0..10).map(|i| !terminal && ends(i)).collect(),
        behavior_log_prob: None,
    };
    Dataset::new(meta, cols, &[(0, 5), (1, 5)]).unwrap()
}

#[test]
fn constant_rewards_without_terminals_are_flagged_as_carrying_no_signal() {
    let flat = Report::new(&two_episodes([-1.0; 10], false));
    assert!(flat.quality.uninformative_rewards);
    assert!(flat.to_string().contains("reward signal          none"));

    // A terminal state makes a constant reward informative (CartPole: +1 until the pole falls).
    let ends = Report::new(&two_episodes([1.0; 10], true));
    assert!(!ends.quality.uninformative_rewards);
    assert!(!ends.to_string().contains("reward signal"));

    // So does a single differing reward.
    let mut r = [-1.0; 10];
    r[7] = 0.0;
    assert!(
        !Report::new(&two_episodes(r, false))
            .quality
            .uninformative_rewards
    );
}

/// The first row with a reward signal splits the prefixes exactly into uninformative ones and
/// the others.
#[test]
fn first_reward_signal_row_splits_the_prefixes() {
    let mut r = [-1.0; 10];
    r[7] = 0.0;
    let ds = two_episodes(r, false);
    assert_eq!(ds.first_reward_signal_row(), Some(7));
    let terminal = two_episodes([1.0; 10], true);
    assert_eq!(terminal.first_reward_signal_row(), Some(4));
    assert_eq!(
        two_episodes([-1.0; 10], false).first_reward_signal_row(),
        None
    );
    for (d, first) in [(&ds, 7), (&terminal, 4)] {
        let (meta, cols, _) = d.clone().into_parts();
        for n in 1..=10 {
            let c = Columns {
                observations: cols.observations[..n].to_vec(),
                next_observations: cols.next_observations[..n].to_vec(),
                next_valid: None,
                actions: match &cols.actions {
                    Actions::Discrete(v) => Actions::Discrete(v[..n].to_vec()),
                    a => a.clone(),
                },
                rewards: cols.rewards[..n].to_vec(),
                terminals: cols.terminals[..n].to_vec(),
                timeouts: cols.timeouts[..n].to_vec(),
                behavior_log_prob: None,
            };
            let eps: Vec<(i64, usize)> = [(0, n.min(5)), (1, n.saturating_sub(5))]
                .into_iter()
                .filter(|e| e.1 > 0)
                .collect();
            let p = Dataset::new(meta.clone(), c, &eps).unwrap();
            assert_eq!(p.uninformative_rewards(), n <= first, "prefix of {n} rows");
        }
    }
}
