//! Published D4RL normalised scores that the locomotion report sets beside orl's.
//!
//! Two sources, both on D4RL's `-v2` MuJoCo datasets (Gym's v2 tasks, D4RL's own behaviour
//! policies and 1M-transition datasets), so they compare with orl's numbers only as far as
//! orl's data resembles D4RL's (`docs/benchmarks/locomotion.md` says how far that is):
//!
//! - [`IQL_PAPER`]: Kostrikov, Nair and Levine, *Offline Reinforcement Learning with Implicit
//!   Q-Learning* (ICLR 2022), Table 1 (IQL; its BC, TD3+BC and CQL columns as that table quotes
//!   them), mean over seeds at the end of training;
//! - [`CORL`]: Tarasov et al., *CORL: Research-oriented Deep Offline Reinforcement Learning
//!   Library* (NeurIPS 2023 datasets and benchmarks), README "Last Scores", Gym-MuJoCo, mean +-
//!   std over 4 seeds of the final policy. CORL has no BCQ.

/// `(algorithm, dataset, score)` rows.
pub type Table = &'static [(&'static str, &'static str, f64)];

/// The IQL paper's Table 1.
pub const IQL_PAPER: Table = &[
    ("bc", "halfcheetah-medium", 42.6),
    ("bc", "hopper-medium", 52.9),
    ("bc", "walker2d-medium", 75.3),
    ("bc", "halfcheetah-medium-replay", 36.6),
    ("bc", "hopper-medium-replay", 18.1),
    ("bc", "walker2d-medium-replay", 26.0),
    ("bc", "halfcheetah-medium-expert", 55.2),
    ("bc", "hopper-medium-expert", 52.5),
    ("bc", "walker2d-medium-expert", 107.5),
    ("td3bc", "halfcheetah-medium", 48.3),
    ("td3bc", "hopper-medium", 59.3),
    ("td3bc", "walker2d-medium", 83.7),
    ("td3bc", "halfcheetah-medium-replay", 44.6),
    ("td3bc", "hopper-medium-replay", 60.9),
    ("td3bc", "walker2d-medium-replay", 81.8),
    ("td3bc", "halfcheetah-medium-expert", 90.7),
    ("td3bc", "hopper-medium-expert", 98.0),
    ("td3bc", "walker2d-medium-expert", 110.1),
    ("cql", "halfcheetah-medium", 44.0),
    ("cql", "hopper-medium", 58.5),
    ("cql", "walker2d-medium", 72.5),
    ("cql", "halfcheetah-medium-replay", 45.5),
    ("cql", "hopper-medium-replay", 95.0),
    ("cql", "walker2d-medium-replay", 77.2),
    ("cql", "halfcheetah-medium-expert", 91.6),
    ("cql", "hopper-medium-expert", 105.4),
    ("cql", "walker2d-medium-expert", 108.8),
    ("iql", "halfcheetah-medium", 47.4),
    ("iql", "hopper-medium", 66.3),
    ("iql", "walker2d-medium", 78.3),
    ("iql", "halfcheetah-medium-replay", 44.2),
    ("iql", "hopper-medium-replay", 94.7),
    ("iql", "walker2d-medium-replay", 73.9),
    ("iql", "halfcheetah-medium-expert", 86.7),
    ("iql", "hopper-medium-expert", 91.5),
    ("iql", "walker2d-medium-expert", 109.6),
];

/// CORL's README, "Last Scores" (means; the std is in the README).
pub const CORL: Table = &[
    ("bc", "halfcheetah-medium", 42.40),
    ("bc", "halfcheetah-medium-replay", 35.66),
    ("bc", "halfcheetah-medium-expert", 55.95),
    ("bc", "hopper-medium", 53.51),
    ("bc", "hopper-medium-replay", 29.81),
    ("bc", "hopper-medium-expert", 52.30),
    ("bc", "walker2d-medium", 63.23),
    ("bc", "walker2d-medium-replay", 21.80),
    ("bc", "walker2d-medium-expert", 98.96),
    ("td3bc", "halfcheetah-medium", 48.10),
    ("td3bc", "halfcheetah-medium-replay", 44.84),
    ("td3bc", "halfcheetah-medium-expert", 90.78),
    ("td3bc", "hopper-medium", 60.37),
    ("td3bc", "hopper-medium-replay", 64.42),
    ("td3bc", "hopper-medium-expert", 101.17),
    ("td3bc", "walker2d-medium", 82.71),
    ("td3bc", "walker2d-medium-replay", 85.62),
    ("td3bc", "walker2d-medium-expert", 110.03),
    ("cql", "halfcheetah-medium", 47.04),
    ("cql", "halfcheetah-medium-replay", 45.04),
    ("cql", "halfcheetah-medium-expert", 95.63),
    ("cql", "hopper-medium", 59.08),
    ("cql", "hopper-medium-replay", 95.11),
    ("cql", "hopper-medium-expert", 99.26),
    ("cql", "walker2d-medium", 80.75),
    ("cql", "walker2d-medium-replay", 73.09),
    ("cql", "walker2d-medium-expert", 109.56),
    ("iql", "halfcheetah-medium", 48.31),
    ("iql", "halfcheetah-medium-replay", 44.46),
    ("iql", "halfcheetah-medium-expert", 94.74),
    ("iql", "hopper-medium", 67.53),
    ("iql", "hopper-medium-replay", 97.43),
    ("iql", "hopper-medium-expert", 107.42),
    ("iql", "walker2d-medium", 80.91),
    ("iql", "walker2d-medium-replay", 82.15),
    ("iql", "walker2d-medium-expert", 111.72),
];

/// D4RL's name (`hopper-medium-replay`, without `-v2`) of an orl locomotion dataset
/// (`hopper-v5-medium-replay`); `None` for other datasets.
pub fn d4rl_name(orl_name: &str) -> Option<String> {
    ["hopper", "walker2d", "halfcheetah"]
        .iter()
        .find_map(|task| {
            let rest = orl_name.strip_prefix(&format!("{task}-v5-"))?;
            Some(format!("{task}-{rest}"))
        })
}

/// The score `table` gives `algo` on the orl dataset `orl_name`.
pub fn score(table: Table, algo: &str, orl_name: &str) -> Option<f64> {
    let name = d4rl_name(orl_name)?;
    table
        .iter()
        .find(|(a, d, _)| *a == algo && *d == name)
        .map(|r| r.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both tables cover the nine locomotion datasets for each of their algorithms once, and
    /// orl's names map onto D4RL's.
    #[test]
    fn tables_cover_the_nine_datasets_once_per_algorithm() {
        for table in [IQL_PAPER, CORL] {
            for algo in ["bc", "td3bc", "cql", "iql"] {
                let mut names: Vec<&str> =
                    table.iter().filter(|r| r.0 == algo).map(|r| r.1).collect();
                names.sort();
                names.dedup();
                assert_eq!(names.len(), 9, "{algo}");
                assert_eq!(table.iter().filter(|r| r.0 == algo).count(), 9, "{algo}");
            }
        }
        assert_eq!(score(IQL_PAPER, "iql", "hopper-v5-medium"), Some(66.3));
        assert_eq!(
            score(CORL, "td3bc", "walker2d-v5-medium-replay"),
            Some(85.62)
        );
        assert_eq!(score(CORL, "bcq", "hopper-v5-medium"), None);
        assert_eq!(d4rl_name("pendulum-v1-medium"), None);
    }
}
