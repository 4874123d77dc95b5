//! Offline RL algorithms: CQL, IQL, BCQ, with BC and TD3+BC baselines; SAC and DQN for
//! behaviour policies.
//!
//! **Not implemented yet**: this crate is a placeholder for issue 4 and exports nothing.
