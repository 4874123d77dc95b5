//! The two backends compute the same network passes and Adam steps: an MLP's output, its
//! parameter gradients and its input gradient (plain and ensemble, shared and per-member input),
//! and Adam's updates with and without clipping, on [`Cpu`] (the engine) and on [`Candle`]
//! (candle tensors, here on the CPU), from the same parameters.
//!
//! Tolerance: per buffer, `max |cpu - candle| <= 1e-5 * max(max |cpu|, 1e-3)`, the parity
//! tests' tolerance (`orl-testkit`'s `parity`): both sides compute in `f32` with different
//! summation orders.

#![allow(clippy::unwrap_used)]

use orl_nets::AdamConfig;
use orl_nets::engine::backend::{Backend, Candle, Cpu, Map2, Scalar};
use orl_nets::engine::{Activation, Input, Mlp, Params};
use rand::{RngExt, SeedableRng};

fn assert_close(case: &str, what: &str, cpu: &[f32], candle: &[f32]) {
    assert_eq!(cpu.len(), candle.len(), "{case}: {what}: lengths");
    let scale = cpu.iter().map(|v| f64::from(v.abs())).fold(1e-3, f64::max);
    let err = cpu
        .iter()
        .zip(candle)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    assert!(
        err <= 1e-5 * scale,
        "{case}: {what}: max error {err:e} against scale {scale:e}"
    );
}

/// `dL/dy` of `L = sum_i w_i y_i^2 / 2` with fixed weights `w` (a loss that mixes the outputs).
struct Weighted;
impl Map2 for Weighted {
    fn apply<S: Scalar>(&self, y: S, w: S) -> S {
        y * w
    }
}

/// Output, parameter gradient and (when asked) input gradient of one pass on backend `be`.
#[allow(clippy::too_many_arguments)]
fn pass<B: Backend>(
    be: &B,
    host: &Params,
    mlp: &Mlp,
    x: &[f32],
    input: Input,
    batch: usize,
    w: &[f32],
    with_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let p = be.place(host).unwrap();
    let (mut xb, mut wb, mut dy, mut g, mut dx) = Default::default();
    be.upload(x, mlp.input_dim(), &mut xb).unwrap();
    be.upload(w, mlp.output_dim(), &mut wb).unwrap();
    let mut cache = B::Cache::default();
    be.mlp_forward(mlp, &p, &xb, input, batch, &mut cache)
        .unwrap();
    be.map2(&Weighted, be.mlp_output(&cache), &wb, &mut dy)
        .unwrap();
    be.zeros_for(&p, &mut g).unwrap();
    be.mlp_backward(
        mlp,
        &p,
        &xb,
        input,
        &mut cache,
        &dy,
        Some(&mut g),
        with_dx.then_some(&mut dx),
    )
    .unwrap();
    let (mut out, mut gh, mut dxh) = (Vec::new(), Vec::new(), Vec::new());
    be.download(be.mlp_output(&cache), &mut out).unwrap();
    be.download(&g, &mut gh).unwrap();
    if with_dx {
        be.download(&dx, &mut dxh).unwrap();
    }
    (out, gh, dxh)
}

#[test]
fn mlp_passes_agree_on_both_backends() {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
    let (obs, batch) = (5, 64);
    for members in [None, Some(3)] {
        for input in [Input::Shared, Input::PerMember] {
            if members.is_none() && input == Input::PerMember {
                continue;
            }
            for out_act in [Activation::Identity, Activation::Tanh] {
                let mut host = Params::new();
                let mut pb = host.builder("net", &mut rng);
                let mlp = match members {
                    None => Mlp::new(&mut pb, obs, &[32, 16], 2, out_act),
                    Some(e) => Mlp::ensemble(&mut pb, e, obs, &[32, 16], 2, out_act),
                }
                .unwrap();
                let e = mlp.members();
                let rows = if input == Input::Shared {
                    batch
                } else {
                    e * batch
                };
                let x: Vec<f32> = (0..rows * obs)
                    .map(|_| rng.random_range(-2.0..2.0))
                    .collect();
                let w: Vec<f32> = (0..e * batch * 2)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let case = format!("members {members:?}, {input:?}, {out_act:?}");
                let a = pass(&Cpu, &host, &mlp, &x, input, batch, &w, true);
                let b = pass(&Candle::cpu(), &host, &mlp, &x, input, batch, &w, true);
                assert_close(&case, "output", &a.0, &b.0);
                assert_close(&case, "parameter gradient", &a.1, &b.1);
                assert!(a.1.iter().any(|&v| v != 0.0), "{case}: zero gradient");
                assert_close(&case, "input gradient", &a.2, &b.2);
                // Without dx the parameter gradients are the same.
                let c = pass(&Candle::cpu(), &host, &mlp, &x, input, batch, &w, false);
                assert_close(&case, "parameter gradient without dx", &a.1, &c.1);
            }
        }
    }
}

/// Ten Adam steps from the same gradient sequence on both backends.
fn adam_run<B: Backend>(
    be: &B,
    host: &Params,
    cfg: AdamConfig,
    grads: &[Vec<f32>],
) -> (Vec<f32>, Vec<Option<f64>>) {
    let mut p = be.place(host).unwrap();
    let mut opt = be.adam(&p, cfg, None).unwrap();
    let mut norms = Vec::new();
    for g in grads {
        let buf = be.zero_grad(&mut opt).unwrap();
        be.upload(g, 1, buf).unwrap();
        norms.push(be.adam_step(&mut opt, &mut p).unwrap());
    }
    (be.host_params(&p).unwrap().data().to_vec(), norms)
}

#[test]
fn adam_steps_agree_on_both_backends() {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(5);
    let mut host = Params::new();
    Mlp::new(
        &mut host.builder("q", &mut rng),
        4,
        &[16],
        1,
        Activation::Identity,
    )
    .unwrap();
    let grads: Vec<Vec<f32>> = (0..10)
        .map(|_| {
            (0..host.len())
                .map(|_| rng.random_range(-3.0..3.0))
                .collect()
        })
        .collect();
    for (case, cfg) in [
        ("plain", AdamConfig::with_lr(1e-2)),
        (
            "clipped, weight decay",
            AdamConfig {
                max_grad_norm: Some(1.0),
                weight_decay: 0.1,
                ..AdamConfig::with_lr(1e-2)
            },
        ),
    ] {
        let (a, na) = adam_run(&Cpu, &host, cfg.clone(), &grads);
        let (b, nb) = adam_run(&Candle::cpu(), &host, cfg, &grads);
        assert_close(case, "parameters after 10 steps", &a, &b);
        assert_ne!(a, host.data(), "{case}: Adam did not move the parameters");
        for (x, y) in na.iter().zip(&nb) {
            match (x, y) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-5 * x.max(1e-3),
                    "{case}: norm {x} vs {y}"
                ),
                (None, None) => {}
                _ => panic!("{case}: one backend clipped, the other did not"),
            }
        }
    }
}

#[test]
fn candle_parameters_and_moments_round_trip_through_named_tensors() {
    use orl_nets::{NetState, OptimState};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
    let mut host = Params::new();
    Mlp::new(
        &mut host.builder("pi", &mut rng),
        3,
        &[8],
        2,
        Activation::Tanh,
    )
    .unwrap();
    let be = Candle::cpu();
    let mut p = be.place(&host).unwrap();
    let mut opt = be.adam(&p, AdamConfig::with_lr(1e-2), None).unwrap();
    let g: Vec<f32> = (0..host.len()).map(|i| (i as f32 * 0.37).sin()).collect();
    be.upload(&g, 1, be.zero_grad(&mut opt).unwrap()).unwrap();
    be.adam_step(&mut opt, &mut p).unwrap();
    // The candle state saved under the engine's names loads into the engine and back.
    let named: std::collections::HashMap<_, _> = p.named_tensors("").into_iter().collect();
    let moments: std::collections::HashMap<_, _> = opt.named_state("").into_iter().collect();
    let mut cpu = host.clone();
    cpu.load_named(&named, "").unwrap();
    assert_eq!(cpu.data(), be.host_params(&p).unwrap().data());
    let mut fresh = be.place(&host).unwrap();
    fresh.load_named(&named, "").unwrap();
    assert_eq!(be.host_params(&fresh).unwrap().data(), cpu.data());
    let mut opt2 = be.adam(&fresh, AdamConfig::with_lr(1e-2), None).unwrap();
    opt2.load_state(&moments, "", opt.steps()).unwrap();
    assert_eq!(opt2.steps(), 1);
    let mut engine_opt = Cpu.adam(&cpu, AdamConfig::with_lr(1e-2), None).unwrap();
    engine_opt.load_state(&moments, "", 1).unwrap();
    // One more identical step on each side stays equal.
    be.upload(&g, 1, be.zero_grad(&mut opt2).unwrap()).unwrap();
    be.adam_step(&mut opt2, &mut fresh).unwrap();
    Cpu.upload(&g, 1, Cpu.zero_grad(&mut engine_opt).unwrap())
        .unwrap();
    Cpu.adam_step(&mut engine_opt, &mut cpu).unwrap();
    assert_close(
        "round trip",
        "second step",
        cpu.data(),
        be.host_params(&fresh).unwrap().data(),
    );
}

/// `a + b * c` (a kernel of three inputs).
struct Fma;
impl orl_nets::engine::backend::Map3 for Fma {
    fn apply<S: Scalar>(&self, a: S, b: S, c: S) -> S {
        a + b * c
    }
}

/// `clamp(|a| / 3 - b, -0.5, 0.5)`: the remaining scalar operations.
struct Rest;
impl Map2 for Rest {
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        (a.abs().div_by(3.0) - b).clamp(-0.5, 0.5)
    }
}

/// `ln(1 + a^2) + inside(b, -0.5, 1)`.
struct LnInside;
impl Map2 for LnInside {
    fn apply<S: Scalar>(&self, a: S, b: S) -> S {
        (a.clone() * a).shift(1.0).ln() + b.inside(-0.5, 1.0)
    }
}

/// The layout and arithmetic operations of the backend on `[6, 3]` and `[6, 2]` inputs, each
/// result downloaded, and two sums.
fn data_ops<B: Backend>(be: &B, a: &[f32], b: &[f32]) -> (Vec<Vec<f32>>, Vec<f64>) {
    use orl_nets::engine::backend::{Abs, Identity, Min, SquaredError};
    let (mut ab, mut bb) = Default::default();
    be.upload(a, 3, &mut ab).unwrap();
    be.upload(b, 2, &mut bb).unwrap();
    let mut outs = Vec::new();
    let mut keep = |buf: &B::Buf| {
        let mut h = Vec::new();
        be.download(buf, &mut h).unwrap();
        outs.push(h);
    };
    let (mut cat, mut c1, mut r, mut t, mut f, mut m3, mut m2, mut mn) = Default::default();
    be.concat_cols(&ab, 3, &bb, 2, &mut cat).unwrap();
    keep(&cat);
    be.cols(&cat, 5, 2, 2, &mut c1).unwrap(); // a's last column, b's first
    keep(&c1);
    be.rows(&cat, 5, 2, 3, &mut r).unwrap();
    keep(&r);
    be.tile_rows(&r, 3, &mut t).unwrap();
    keep(&t);
    be.fill(&c1, -0.25, &mut f).unwrap();
    keep(&f);
    be.map3(&Fma, &c1, &c1, &f, &mut m3).unwrap();
    keep(&m3);
    be.map2(&Rest, &c1, &f, &mut m2).unwrap();
    keep(&m2);
    be.map2(&Min, &c1, &f, &mut mn).unwrap();
    keep(&mn);
    // Row and column reductions and tiles of `cat` `[6, 5]`, `ln` and `inside`.
    let (mut sc, mut mc, mut sr, mut tc, mut lg) = Default::default();
    be.sum_cols(&cat, 5, &mut sc).unwrap();
    keep(&sc);
    be.max_cols(&cat, 5, &mut mc).unwrap();
    keep(&mc);
    be.sum_rows(&cat, 5, &mut sr).unwrap();
    keep(&sr);
    be.tile_cols(&sc, 3, &mut tc).unwrap();
    keep(&tc);
    be.map2(&LnInside, &cat, &cat, &mut lg).unwrap();
    keep(&lg);
    let sums = vec![
        be.map1_sum(&Abs, &cat).unwrap(),
        be.map1_sum(&Identity, &cat).unwrap(),
        be.map2_sum(&SquaredError, &c1, &f).unwrap(),
    ];
    (outs, sums)
}

#[test]
fn layout_and_arithmetic_ops_agree_on_both_backends() {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
    let a: Vec<f32> = (0..18).map(|_| rng.random_range(-2.0..2.0)).collect();
    let b: Vec<f32> = (0..12).map(|_| rng.random_range(-2.0..2.0)).collect();
    let (x, xs) = data_ops(&Cpu, &a, &b);
    let (y, ys) = data_ops(&Candle::cpu(), &a, &b);
    let names = [
        "concat",
        "cols",
        "rows",
        "tile",
        "fill",
        "map3",
        "map2",
        "min",
        "sum_cols",
        "max_cols",
        "sum_rows",
        "tile_cols",
        "ln/inside",
    ];
    assert_eq!(x.len(), names.len());
    for ((n, x), y) in names.iter().zip(&x).zip(&y) {
        assert_close("ops", n, x, y);
    }
    // The CPU results themselves, from their definitions.
    assert_eq!(x[0][..5], [a[0], a[1], a[2], b[0], b[1]]);
    assert_eq!(
        x[1],
        (0..6)
            .flat_map(|r| [a[r * 3 + 2], b[r * 2]])
            .collect::<Vec<_>>()
    );
    assert_eq!(x[2], x[0][10..25]);
    assert_eq!(x[3], [x[2].clone(), x[2].clone(), x[2].clone()].concat());
    assert!(x[4].len() == 12 && x[4].iter().all(|&v| v == -0.25));
    assert!(x[7].iter().zip(&x[1]).all(|(&m, &c)| m == c.min(-0.25)));
    let cat_rows: Vec<&[f32]> = x[0].chunks(5).collect();
    assert_eq!(
        x[8],
        cat_rows
            .iter()
            .map(|r| r.iter().sum::<f32>())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        x[9],
        cat_rows
            .iter()
            .map(|r| r.iter().copied().fold(f32::MIN, f32::max))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        x[10],
        (0..5)
            .map(|j| cat_rows.iter().map(|r| r[j]).sum::<f32>())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        x[11],
        x[8].iter().flat_map(|&v| [v, v, v]).collect::<Vec<_>>()
    );
    let inside = x[0].iter().filter(|&&v| (-0.5..=1.0).contains(&v)).count();
    assert!(
        inside > 0 && inside < 30,
        "the inside mask is exercised both ways"
    );
    for (s, t) in xs.iter().zip(&ys) {
        assert!(
            (s - t).abs() <= 1e-5 * s.abs().max(1e-3),
            "sums {xs:?} vs {ys:?}"
        );
    }
    assert!((xs[0] - a.iter().chain(&b).map(|v| f64::from(v.abs())).sum::<f64>()).abs() < 1e-9);
}

/// One Polyak step and a pass over the first `k` members of `mlp` with `dL/dQ = 1/8`:
/// the averaged parameters, the output, the parameter gradient and the input gradient.
fn first_members<B: Backend>(
    be: &B,
    host: &Params,
    other: &Params,
    mlp: &Mlp,
    x: &[f32],
    k: usize,
) -> [Vec<f32>; 4] {
    let mut t = be.place(host).unwrap();
    be.soft_update(&mut t, &be.place(other).unwrap(), 0.25)
        .unwrap();
    let p = be.place(host).unwrap();
    let (mut xb, mut dy, mut g, mut dx) = Default::default();
    be.upload(x, mlp.input_dim(), &mut xb).unwrap();
    let mut cache = B::Cache::default();
    let batch = x.len() / mlp.input_dim();
    be.mlp_forward_first(mlp, &p, &xb, Input::Shared, batch, k, &mut cache)
        .unwrap();
    be.fill(be.mlp_output(&cache), 0.125, &mut dy).unwrap();
    be.zeros_for(&p, &mut g).unwrap();
    be.mlp_backward(
        mlp,
        &p,
        &xb,
        Input::Shared,
        &mut cache,
        &dy,
        Some(&mut g),
        Some(&mut dx),
    )
    .unwrap();
    // A free parameter row and its gradient: `g[3..7] += p[3..7]`.
    let mut row = B::Buf::default();
    be.param_row(&p, 3, 4, &mut row).unwrap();
    be.add_to_grad(&mut g, 3, &row).unwrap();
    let mut out: [Vec<f32>; 4] = Default::default();
    out[0] = be.host_params(&t).unwrap().data().to_vec();
    be.download(be.mlp_output(&cache), &mut out[1]).unwrap();
    be.download(&g, &mut out[2]).unwrap();
    be.download(&dx, &mut out[3]).unwrap();
    out
}

/// The one-hot of each row's first largest entry, ties included.
#[test]
fn argmax_onehot_takes_the_first_of_ties_on_both_backends() {
    let x = [
        1.0, 3.0, 3.0, -2.0, -1.0, -1.5, 0.5, 0.5, 0.5, 2.0, -7.0, 2.5,
    ];
    let run = |be: &dyn Fn(&[f32]) -> Vec<f32>| be(&x);
    let cpu = run(&|x| {
        let (mut b, mut o) = Default::default();
        Cpu.upload(x, 3, &mut b).unwrap();
        Cpu.argmax_onehot(&b, 3, &mut o).unwrap();
        o
    });
    let candle = run(&|x| {
        let be = Candle::cpu();
        let (mut b, mut o, mut h) = (None, None, Vec::new());
        be.upload(x, 3, &mut b).unwrap();
        be.argmax_onehot(&b, 3, &mut o).unwrap();
        be.download(&o, &mut h).unwrap();
        h
    });
    let want = [0., 1., 0., 0., 1., 0., 1., 0., 0., 0., 0., 1.];
    assert_eq!(cpu, want);
    assert_eq!(candle, want);
}

/// Polyak averaging, and the pass over an ensemble's first member only (TD3's actor reads
/// `Q_1`) with its input gradient, agree on both backends; the first member's output is that
/// member's part of the whole ensemble's, and its pass leaves the second member's gradient zero.
#[test]
fn soft_update_and_first_member_passes_agree() {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let mut host = Params::new();
    let mlp = Mlp::ensemble(
        &mut host.builder("q", &mut rng),
        2,
        4,
        &[16],
        1,
        Activation::Identity,
    )
    .unwrap();
    let mut other = host.clone();
    other.data_mut().iter_mut().for_each(|v| *v = -*v + 0.5);
    let x: Vec<f32> = (0..8 * 4).map(|_| rng.random_range(-1.0..1.0)).collect();
    let cpu = first_members(&Cpu, &host, &other, &mlp, &x, 1);
    let candle = first_members(&Candle::cpu(), &host, &other, &mlp, &x, 1);
    for (n, (a, b)) in ["polyak", "output", "gradient", "input gradient"]
        .iter()
        .zip(cpu.iter().zip(&candle))
    {
        assert_close("first member", n, a, b);
    }
    let want: Vec<f32> = host
        .data()
        .iter()
        .zip(other.data())
        .map(|(&d, &s)| s * 0.25 + d * 0.75)
        .collect();
    assert_eq!(cpu[0], want);
    // `add_to_grad` added the row: compared with a pass that did not add it.
    let mut g_plain = cpu[2].clone();
    for (g, &v) in g_plain[3..7].iter_mut().zip(&host.data()[3..7]) {
        *g -= v;
    }
    assert_ne!(g_plain, cpu[2]);
    let all = first_members(&Cpu, &host, &other, &mlp, &x, 2);
    assert_eq!(cpu[1].len(), 8);
    assert_eq!(cpu[1], all[1][..8]);
    assert!(cpu[2].iter().any(|&v| v != 0.0));
    // Member 1's weights and biases: every gradient entry that the full pass sets and the
    // first-member pass does not.
    let differs = cpu[2].iter().zip(&all[2]).filter(|(a, b)| a != b).count();
    assert!(differs > 0 && cpu[2].iter().filter(|&&v| v == 0.0).count() >= differs);
}

/// `n` samples per state of a tanh-Gaussian head (`sample_repeated_on`: trunk and heads on the
/// distinct states, outputs repeated) give the actions and log-probabilities of
/// `sample_on` on the states repeated in place, on both backends.
#[test]
fn repeated_samples_equal_samples_of_repeated_states() {
    use orl_nets::engine::{TanhBufs, TanhGaussianHead};
    fn run<B: Backend>(be: &B) -> [(Vec<f32>, Vec<f32>); 2] {
        let (obs, act, bsz, n) = (5, 3, 7, 4);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let mut host = Params::new();
        let head = TanhGaussianHead::new(&mut host.builder("", &mut rng), obs, act, &[16, 16], 2.0)
            .unwrap();
        let p = be.place(&host).unwrap();
        let s: Vec<f32> = (0..bsz * obs)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let eps: Vec<f32> = (0..bsz * n * act)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let (mut sb, mut srep, mut eb) = Default::default();
        be.upload(&s, obs, &mut sb).unwrap();
        be.repeat_rows(&sb, obs, n, &mut srep).unwrap();
        be.upload(&eps, act, &mut eb).unwrap();
        let out = |repeated: bool| {
            let (mut a, mut lp) = Default::default();
            let mut c = TanhBufs::<B>::default();
            if repeated {
                head.sample_repeated_on(be, &p, &sb, &eb, bsz, n, &mut c, &mut a, &mut lp)
                    .unwrap();
            } else {
                head.sample_on(be, &p, &srep, &eb, bsz * n, &mut c, &mut a, &mut lp)
                    .unwrap();
            }
            let (mut ah, mut lph) = (Vec::new(), Vec::new());
            be.download(&a, &mut ah).unwrap();
            be.download(&lp, &mut lph).unwrap();
            (ah, lph)
        };
        [out(false), out(true)]
    }
    for (name, [plain, rep]) in [("cpu", run(&Cpu)), ("candle", run(&Candle::cpu()))] {
        assert_eq!(plain.0.len(), 7 * 4 * 3, "{name}: actions");
        assert_eq!(plain.1.len(), 7 * 4, "{name}: log-probabilities");
        assert_close(name, "actions", &plain.0, &rep.0);
        assert_close(name, "log-probabilities", &plain.1, &rep.1);
        // The draws differ from row to row, so the comparison is not between constants.
        assert!(
            plain.0.windows(2).any(|w| w[0] != w[1]),
            "{name}: varied actions"
        );
    }
}
