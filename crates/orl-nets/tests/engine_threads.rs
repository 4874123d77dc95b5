//! The engine's ensemble passes give the same numbers on one thread and on two: with more than
//! one thread in rayon's pool, `Mlp` runs each member's forward and backward pass on its own
//! task (when a member's pass is long enough), doing exactly the operations of the sequential
//! loop.

#![allow(clippy::unwrap_used)]

use orl_nets::engine::{Activation, Input, Mlp, MlpCache, Params};
use rand::{RngExt, SeedableRng};

/// Output, parameter gradients and input gradients of one forward and backward pass of the
/// first `k` members of a 3-member ensemble at 256 rows (long enough to run in parallel).
fn pass(input: Input, k: usize, with_dx: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (e, i, b) = (3, 8, 256);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(1);
    let mut p = Params::new();
    let mlp = Mlp::ensemble(
        &mut p.builder("q", &mut rng),
        e,
        i,
        &[256, 256],
        2,
        Activation::Tanh,
    )
    .unwrap();
    let rows = if input == Input::Shared { b } else { e * b };
    let x: Vec<f32> = (0..rows * i).map(|_| rng.random_range(-1.0..1.0)).collect();
    // The pool's thread count decides (this test runs it in pools of 1 and 2).
    assert_eq!(mlp.parallel_members(b, k), rayon::current_num_threads() > 1);
    let mut cache = MlpCache::new();
    mlp.forward_first(&p, &x, input, b, k, &mut cache);
    let out = cache.output().to_vec();
    for (d, o) in cache.dout_mut().iter_mut().zip(&out) {
        *d = o * 0.5 - 0.1;
    }
    let mut grads = vec![0f32; p.len()];
    let mut dx = vec![0f32; rows * i];
    mlp.backward(
        &p,
        &x,
        input,
        &mut cache,
        Some(&mut grads),
        with_dx.then_some(dx.as_mut_slice()),
    );
    (out, grads, dx)
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn ensemble_passes_give_the_same_numbers_on_one_and_two_threads() {
    for input in [Input::Shared, Input::PerMember] {
        for k in [2, 3] {
            for with_dx in [false, true] {
                let one = in_pool(1, || pass(input, k, with_dx));
                let two = in_pool(2, || pass(input, k, with_dx));
                assert_eq!(one, two, "{input:?}, {k} members, dx {with_dx}");
                assert!(one.1.iter().any(|&g| g != 0.0));
                assert_eq!(one.2.iter().any(|&g| g != 0.0), with_dx);
            }
        }
    }
}
