//! Environment step throughput with a zero-action policy, one core (issue 3 goals):
//!
//! * classic control (`CartPole-v1`, `Pendulum-v1`, `MountainCar-v0`,
//!   `MountainCarContinuous-v0`, `Acrobot-v1`): goal above 5M steps/s;
//! * `Hopper-v5` (with `--features mujoco`): goal at least 15k steps/s (raw MuJoCo with
//!   Gymnasium's frame skip: ~18k/s; Python Gymnasium: ~9k/s on the same machine).
//!
//! Each iteration is one `step_into` through the registered `TimeLimit` wrapper; the episode is
//! reset (same seed) whenever it ends, and resets are counted inside the measurement.
//!
//! Run: `cargo bench -p orl-benches --bench envs` (add `--features mujoco` for Hopper).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use orl_envs::{Action, Env, REGISTRY, Space, make};

fn steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("env_step");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for spec in REGISTRY
        .iter()
        .filter(|s| !s.needs_mujoco || orl_envs::MUJOCO_ENABLED)
    {
        if spec.needs_mujoco && spec.id != "Hopper-v5" {
            continue;
        }
        let mut env = make(spec.id).expect("make");
        let zeros = vec![0.0_f32; env.action_space().dim()];
        let action = match env.action_space() {
            Space::Discrete { .. } => Action::Discrete(0),
            Space::Box { .. } => Action::Continuous(&zeros),
        };
        let mut obs = Vec::with_capacity(64);
        env.reset_into(Some(0), &mut obs);
        g.bench_function(spec.id, |b| {
            b.iter(|| {
                let o = env.step_into(black_box(action), &mut obs).expect("step");
                if o.terminated || o.truncated {
                    env.reset_into(Some(0), &mut obs);
                }
                black_box(o.reward)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, steps);
criterion_main!(benches);
