//! The building blocks against their formulas: tanh-Gaussian log-density (change of variables),
//! Adam's first steps, polyak averaging, ensemble members equal to separate MLPs, checkpoint
//! round trips, and normalisation folded into an exported first layer.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use orl_nets::{
    Adam, AdamConfig, EnsembleMlp, Head, Mlp, Noise, ParamStore, PolicyModel, ReluNet,
    TanhGaussianActor, checkpoint,
};
use rand::SeedableRng;

fn rng(seed: u64) -> rand_pcg::Pcg64Mcg {
    rand_pcg::Pcg64Mcg::seed_from_u64(seed)
}

#[test]
fn tanh_gaussian_log_prob_matches_the_change_of_variables() {
    let mut store = ParamStore::new(Device::Cpu);
    let actor =
        TanhGaussianActor::new(&mut store.builder("a", &mut rng(0)), 3, 2, &[16, 16], 2.0).unwrap();
    let s = Tensor::from_vec(
        vec![0.1f32, -0.4, 0.7, 0.9, 0.2, -0.3],
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    let (a, lp) = actor.sample(&s, &mut Noise::new(1, Device::Cpu)).unwrap();
    // log_prob of the sampled action must equal the sample's own log-density.
    let lp2 = actor.log_prob(&s, &a).unwrap();
    let (x, y): (Vec<f32>, Vec<f32>) = (lp.to_vec1().unwrap(), lp2.to_vec1().unwrap());
    for (p, q) in x.iter().zip(&y) {
        assert!((p - q).abs() < 1e-3, "{x:?} vs {y:?}");
    }
    // The density integrates to 1: Monte Carlo over a grid of one state's 2-D action box.
    let one = s.narrow(0, 0, 1).unwrap();
    let n = 200;
    let mut total = 0.0f64;
    let h = 4.0 / n as f64;
    for i in 0..n {
        let row: Vec<f32> = (0..n)
            .flat_map(|j| {
                [
                    (-2.0 + h * (i as f64 + 0.5)) as f32,
                    (-2.0 + h * (j as f64 + 0.5)) as f32,
                ]
            })
            .collect();
        let acts = Tensor::from_vec(row, (n, 2), &Device::Cpu).unwrap();
        let ss = one.broadcast_as((n, 3)).unwrap().contiguous().unwrap();
        let lp: Vec<f32> = actor.log_prob(&ss, &acts).unwrap().to_vec1().unwrap();
        total += lp.iter().map(|&l| f64::from(l).exp() * h * h).sum::<f64>();
    }
    assert!(
        (total - 1.0).abs() < 0.05,
        "the density integrates to {total}"
    );
}

#[test]
fn adam_first_step_moves_each_parameter_by_the_learning_rate() {
    let mut store = ParamStore::new(Device::Cpu);
    let mlp = Mlp::new(&mut store.builder("m", &mut rng(3)), 2, &[4], 1).unwrap();
    let before: Vec<Vec<f32>> = store
        .vars()
        .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let mut opt = Adam::new(&store, AdamConfig::with_lr(0.01)).unwrap();
    let x = Tensor::from_vec(vec![1.0f32, -2.0, 0.5, 0.3], (2, 2), &Device::Cpu).unwrap();
    let loss = mlp.forward(&x).unwrap().sqr().unwrap().mean_all().unwrap();
    opt.backward_step(&loss).unwrap();
    // Bias-corrected Adam's first step is lr * g / (|g| + eps): +-lr wherever the gradient is
    // not (nearly) zero.
    for ((_, v), b) in store.vars().zip(&before) {
        let after: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for (x, y) in after.iter().zip(b) {
            let d = (x - y).abs();
            assert!(d < 1e-6 || (d - 0.01).abs() < 1e-4, "step {d}");
        }
    }
}

#[test]
fn polyak_average_and_hard_copy() {
    let mut a = ParamStore::new(Device::Cpu);
    let mut b = ParamStore::new(Device::Cpu);
    a.builder("", &mut rng(0)).constant("w", &[3], 1.0).unwrap();
    b.builder("", &mut rng(0)).constant("w", &[3], 3.0).unwrap();
    a.soft_update_from(&b, 0.25).unwrap();
    let w: Vec<f32> = a.get("w").unwrap().as_tensor().to_vec1().unwrap();
    assert_eq!(w, vec![1.5; 3]);
    a.copy_from(&b).unwrap();
    assert_eq!(
        a.get("w").unwrap().as_tensor().to_vec1::<f32>().unwrap(),
        vec![3.0; 3]
    );
}

#[test]
fn ensemble_members_are_independent_mlps() {
    let mut store = ParamStore::new(Device::Cpu);
    let ens = EnsembleMlp::new(&mut store.builder("e", &mut rng(5)), 2, 3, &[8], 1).unwrap();
    let x = Tensor::from_vec(
        (0..12).map(|i| i as f32 / 10.0).collect::<Vec<_>>(),
        (4, 3),
        &Device::Cpu,
    )
    .unwrap();
    let y = ens.forward(&x).unwrap(); // [2, 4, 1]
    // Member 1 by hand from its slices of the stacked weights.
    let w0 = store.get("e.0.weight").unwrap().as_tensor().get(1).unwrap();
    let b0 = store.get("e.0.bias").unwrap().as_tensor().get(1).unwrap();
    let w1 = store.get("e.1.weight").unwrap().as_tensor().get(1).unwrap();
    let b1 = store.get("e.1.bias").unwrap().as_tensor().get(1).unwrap();
    let h = x
        .matmul(&w0)
        .unwrap()
        .broadcast_add(&b0)
        .unwrap()
        .relu()
        .unwrap();
    let want: Vec<f32> = h
        .matmul(&w1)
        .unwrap()
        .broadcast_add(&b1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let got: Vec<f32> = y.get(1).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-5);
    }
}

#[test]
fn checkpoints_round_trip_and_refuse_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.safetensors");
    let t = Tensor::from_vec(vec![1.5f32, -2.0, 3.25, 0.0], (2, 2), &Device::Cpu).unwrap();
    let meta = HashMap::from([("k".to_string(), "v".to_string())]);
    checkpoint::save(&p, &[("x.y".to_string(), t.clone())], &meta).unwrap();
    let (ts, m) = checkpoint::load(&p, &Device::Cpu).unwrap();
    assert_eq!(m["k"], "v");
    assert_eq!(
        ts["x.y"].to_vec2::<f32>().unwrap(),
        t.to_vec2::<f32>().unwrap()
    );
    std::fs::write(&p, b"not a checkpoint").unwrap();
    let err = checkpoint::load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("c.safetensors"), "{err}");
    // No temporary file is left behind by a save.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn folded_normalisation_equals_normalising_first() {
    let mut store = ParamStore::new(Device::Cpu);
    let mlp = Mlp::new(&mut store.builder("p", &mut rng(9)), 3, &[8], 2).unwrap();
    let names = vec!["p.0".to_string(), "p.1".to_string()];
    let mut exported = PolicyModel::Tanh {
        net: ReluNet::from_named(&store.named_tensors(""), "", &names).unwrap(),
        max_action: 1.5,
    };
    assert_eq!(exported.head(), Head::Tanh);
    let (mean, std) = (vec![0.5f32, -1.0, 2.0], vec![2.0f32, 0.5, 4.0]);
    exported.fold_normalization(&mean, &std).unwrap();
    let raw = vec![1.0f32, 0.0, -3.0];
    let normed: Vec<f32> = raw
        .iter()
        .zip(mean.iter().zip(&std))
        .map(|(x, (m, s))| (x - m) / s)
        .collect();
    let want = (mlp
        .forward(&Tensor::from_vec(normed, (1, 3), &Device::Cpu).unwrap())
        .unwrap()
        .tanh()
        .unwrap()
        * 1.5)
        .unwrap();
    let got = exported
        .forward(&Tensor::from_vec(raw, (1, 3), &Device::Cpu).unwrap())
        .unwrap();
    let (w, g): (Vec<f32>, Vec<f32>) = (
        want.flatten_all().unwrap().to_vec1().unwrap(),
        got.flatten_all().unwrap().to_vec1().unwrap(),
    );
    for (a, b) in w.iter().zip(&g) {
        assert!((a - b).abs() < 1e-5, "{w:?} vs {g:?}");
    }
    let _ = DType::F32;
}

#[test]
fn folding_touches_only_the_observation_rows() {
    // A critic-like net reading [s, a]: the action rows must keep their weights.
    let mut store = ParamStore::new(Device::Cpu);
    let mlp = Mlp::new(&mut store.builder("q", &mut rng(4)), 3 + 2, &[8], 1).unwrap();
    let names = vec!["q.0".to_string(), "q.1".to_string()];
    let mut net = ReluNet::from_named(&store.named_tensors(""), "", &names).unwrap();
    let (mean, std) = (vec![1.0f32, 2.0, -1.0], vec![0.5f32, 3.0, 2.0]);
    net.fold_normalization(&mean, &std).unwrap();
    let (raw, act) = ([0.3f32, -1.0, 2.0], [0.7f32, -0.4]);
    let mut normed: Vec<f32> = raw
        .iter()
        .zip(mean.iter().zip(&std))
        .map(|(x, (m, s))| (x - m) / s)
        .collect();
    normed.extend(act);
    let mut folded_in = raw.to_vec();
    folded_in.extend(act);
    let want: Vec<f32> = mlp
        .forward(&Tensor::from_vec(normed, (1, 5), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let got: Vec<f32> = net
        .forward(&Tensor::from_vec(folded_in, (1, 5), &Device::Cpu).unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!((want[0] - got[0]).abs() < 1e-5, "{want:?} vs {got:?}");
    // Statistics wider than the layer's input are refused, not silently truncated.
    assert!(net.fold_normalization(&[0.0; 6], &[1.0; 6]).is_err());
}
