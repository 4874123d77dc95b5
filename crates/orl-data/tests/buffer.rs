//! `TransitionBuffer`: appending episodes, uniform sampling, truncation, the dataset it
//! becomes, and a save/load round trip that keeps every value and the open episode.

#![allow(clippy::unwrap_used)]

use orl_data::{ActionSpace, Batch, Transition, TransitionAction, TransitionBuffer};
use rand::SeedableRng;

/// Two closed episodes (3 and 2 rows, the first terminal, the second cut by a timeout) and an
/// open one of 2 rows; 2-d observations, 1-d continuous actions, log-probs on every row.
fn filled() -> TransitionBuffer {
    let mut b = TransitionBuffer::for_spaces(
        2,
        ActionSpace::Continuous {
            dim: 1,
            low: Some(vec![-1.0]),
            high: Some(vec![1.0]),
        },
    );
    let mut row = 0f32;
    for (len, end) in [(3, "terminal"), (2, "timeout"), (2, "open")] {
        for j in 0..len {
            let last = j + 1 == len;
            b.push(Transition {
                observation: &[row, -row],
                action: TransitionAction::Continuous(&[row / 10.0]),
                reward: row * 0.5,
                next_observation: &[row + 1.0, -row - 1.0],
                terminal: last && end == "terminal",
                timeout: last && end == "timeout",
                log_prob: Some(-f64::from(row)),
            })
            .unwrap();
            row += 1.0;
        }
        if end != "open" {
            b.end_episode();
        }
    }
    b
}

#[test]
fn episodes_and_the_open_tail_become_the_dataset() {
    let b = filled();
    assert_eq!((b.len(), b.num_episodes()), (7, 2));
    let ds = b.to_dataset().unwrap();
    let eps: Vec<_> = ds.episodes().collect();
    assert_eq!(eps.len(), 3);
    assert_eq!(
        eps.iter()
            .map(|e| (e.rows.len(), e.terminal, e.timeout))
            .collect::<Vec<_>>(),
        [(3, true, false), (2, false, true), (2, false, false)]
    );
    assert_eq!(ds.columns().behavior_log_prob.as_ref().unwrap()[6], -6.0);
    assert_eq!(ds.rewards()[4], 2.0);
}

#[test]
fn truncation_cuts_an_episode_into_an_open_one() {
    let mut b = filled();
    b.truncate(4);
    assert_eq!((b.len(), b.num_episodes()), (4, 1));
    let ds = b.to_dataset().unwrap();
    let lens: Vec<usize> = ds.episodes().map(|e| e.rows.len()).collect();
    assert_eq!(lens, [3, 1]);
    assert!(!ds.episodes().last().unwrap().timeout);
}

#[test]
fn uniform_sampling_draws_whole_rows() {
    let b = filled();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let mut batch = Batch::default();
    b.sample_uniform_into(&mut batch, 64, 0.9, &mut rng);
    assert_eq!(batch.batch_size, 64);
    for (j, &i) in batch.indices.iter().enumerate() {
        let r = i as f32;
        assert_eq!(batch.observations[2 * j..2 * j + 2], [r, -r]);
        assert_eq!(batch.actions[j], r / 10.0);
        assert_eq!(batch.next_observations[2 * j], r + 1.0);
        assert_eq!(batch.terminals[j], if i == 2 { 1.0 } else { 0.0 });
        assert_eq!(batch.timeouts[j], if i == 4 { 1.0 } else { 0.0 });
        assert_eq!(batch.discounts[j], 0.9);
    }
    // Every row is reachable.
    let mut seen = batch.indices.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 7);
}

#[test]
fn save_and_load_keep_every_value_and_the_open_episode() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("buffer.parquet");
    let mut b = filled();
    b.save(&p).unwrap();
    let mut back = TransitionBuffer::load(&p).unwrap();
    assert_eq!(back, b);
    // The open episode continues after loading.
    for buf in [&mut b, &mut back] {
        buf.push(Transition {
            observation: &[0.5, 0.5],
            action: TransitionAction::Continuous(&[0.1]),
            reward: 1.0,
            next_observation: &[0.0, 0.0],
            terminal: true,
            timeout: false,
            log_prob: None,
        })
        .unwrap();
        buf.end_episode();
    }
    assert_eq!(back, b);
    // Rows with and without log-probabilities survive too.
    b.save(&p).unwrap();
    assert_eq!(TransitionBuffer::load(&p).unwrap(), b);
}

#[test]
fn wrong_widths_and_kinds_are_errors_naming_the_row() {
    let mut b = filled();
    let err = b
        .push(Transition {
            observation: &[0.0],
            action: TransitionAction::Continuous(&[0.0]),
            reward: 0.0,
            next_observation: &[0.0, 0.0],
            terminal: false,
            timeout: false,
            log_prob: None,
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transition 7") && err.contains("observation"),
        "{err}"
    );
    let err = b
        .push(Transition {
            observation: &[0.0, 0.0],
            action: TransitionAction::Discrete(1),
            reward: 0.0,
            next_observation: &[0.0, 0.0],
            terminal: false,
            timeout: false,
            log_prob: None,
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("action kind"), "{err}");
    assert_eq!(b.len(), 7, "a rejected transition is not half-appended");
}
