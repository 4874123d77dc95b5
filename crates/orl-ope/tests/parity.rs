//! Gradient parity: the behaviour model's, FQE's and the dynamics ensemble's losses and
//! parameter gradients, computed by `orl-nets`' engine, equal candle autograd's computed from
//! the same parameters on the same rows.
//!
//! Each case fits a few steps first (so the parameters are not at their initialisation), takes
//! the model's `probe` (loss and gradients at the current parameters, state unchanged) on
//! random rows, then rebuilds the network as a candle module from the model's parameters,
//! writes the loss with candle ops as the model's doc states it, on the probe's input rows,
//! and back-propagates.
//!
//! Tolerance as in `orl-algos`' parity tests: `orl_testkit::parity` (per tensor, relative to its
//! largest element, with a floor; the reasons are written there), and every engine gradient
//! must be nonzero somewhere.
//!
//! Every case runs on both of the engine's backends: the CPU engine (`Cpu`) and candle tensors
//! (`Candle::cpu()`, the GPU path's code on the CPU). The `*_fit_alike_*` tests fit each model on
//! both backends from the same seed and compare the fitted parameters and losses.
//!
//! FQE's regression target `y` (the target network's value at the next state) carries no
//! gradient; it is checked end to end by `tabular.rs` (FQE converges to the exact `Q`) and
//! `horizon.rs` (the time-limited value).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use orl_data::{ActionSpace, Actions, Columns, Dataset, DatasetMeta, ObservationSpace};
use orl_nets::engine::Params;
use orl_nets::engine::backend::{Backend, Candle, Cpu};
use orl_nets::{EnsembleMlp, Mlp, NetState, ParamStore, Policy, Vb, normal_log_prob, softplus};
use orl_ope::{
    BehaviorConfig, BehaviorModel, Fqe, FqeConfig, Logged, ModelConfig, ProbabilisticEnsemble,
    Probe,
};
use orl_testkit::parity::{assert_close, assert_grads_match};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

const OBS: usize = 3;
const ACT: usize = 2;
const N: usize = 3;

/// 8 episodes of 15 steps with random observations, actions and rewards; every third episode
/// terminates, the others are cut by the time limit.
fn logged(discrete: bool) -> Logged {
    let mut rng = Pcg64Mcg::seed_from_u64(3);
    let (eps, len) = (8, 15);
    let n = eps * len;
    let obs: Vec<f32> = (0..n * OBS).map(|_| rng.random_range(-2.0..2.0)).collect();
    let next: Vec<f32> = obs
        .iter()
        .map(|x| 0.9 * x + rng.random_range(-0.1..0.1))
        .collect();
    let (actions, space) = if discrete {
        (
            Actions::Discrete((0..n).map(|_| rng.random_range(0..N as i64)).collect()),
            ActionSpace::Discrete { n: N },
        )
    } else {
        (
            Actions::Continuous {
                dim: ACT,
                values: (0..n * ACT).map(|_| rng.random_range(-1.0..1.0)).collect(),
            },
            ActionSpace::Continuous {
                dim: ACT,
                low: None,
                high: None,
            },
        )
    };
    let last = |i: usize| i % len == len - 1;
    let cols = Columns {
        observations: obs,
        next_observations: next,
        next_valid: None,
        actions,
        rewards: (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
        terminals: (0..n).map(|i| last(i) && (i / len) % 3 == 0).collect(),
        timeouts: (0..n).map(|i| last(i) && (i / len) % 3 != 0).collect(),
        behavior_log_prob: None,
    };
    let mut meta = DatasetMeta::new(
        ObservationSpace {
            dim: OBS,
            low: None,
            high: None,
        },
        space,
    );
    meta.max_episode_steps = Some(len as u64);
    let episodes: Vec<(i64, usize)> = (0..eps as i64).map(|k| (k, len)).collect();
    Logged::from_dataset(&Dataset::new(meta, cols, &episodes).unwrap()).unwrap()
}

/// A fixed policy: continuous `tanh` of the first observations, discrete
/// `pi = softmax(s_0, s_1, s_2)`.
struct Fixed {
    discrete: bool,
}

impl Policy for Fixed {
    fn is_discrete(&self) -> bool {
        self.discrete
    }
    fn act(&mut self, obs: &Tensor, _: bool) -> orl_nets::Result<Tensor> {
        if self.discrete {
            Ok(obs.argmax(1)?)
        } else {
            Ok(obs.narrow(1, 0, ACT)?.tanh()?)
        }
    }
    fn log_prob(&mut self, obs: &Tensor, a: &Tensor) -> orl_nets::Result<Option<Tensor>> {
        if !self.discrete {
            return Ok(None);
        }
        let lp = candle_nn::ops::log_softmax(obs, D::Minus1)?;
        Ok(Some(
            lp.gather(&a.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?
                .squeeze(1)?,
        ))
    }
}

/// A candle module built under `prefix` and loaded from the engine's `params`.
fn candle_net<M>(
    params: &Params,
    prefix: &str,
    build: impl FnOnce(&mut Vb<'_>) -> orl_nets::Result<M>,
) -> (M, ParamStore) {
    let mut store = ParamStore::new(Device::Cpu);
    let mut rng = Pcg64Mcg::seed_from_u64(99);
    let m = build(&mut store.builder(prefix, &mut rng)).unwrap();
    let tensors: HashMap<String, Tensor> = params.named_tensors("").into_iter().collect();
    NetState::load_named(&mut store, &tensors, "").unwrap();
    (m, store)
}

fn assert_parity(case: &str, probe: &Probe, oracle: &Tensor, store: &ParamStore) {
    assert_grads_match(case, "loss", probe.loss, &probe.grads, oracle, store, true);
}

fn rows(data: &Logged, count: usize, seed: u64) -> Vec<usize> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    (0..count)
        .map(|_| rng.random_range(0..data.len()))
        .collect()
}

fn actions_of(data: &Logged, idx: &[usize]) -> Tensor {
    if data.act_u32.is_empty() {
        let v: Vec<f32> = idx
            .iter()
            .flat_map(|&i| data.act_f32[i * ACT..(i + 1) * ACT].iter().copied())
            .collect();
        Tensor::from_vec(v, (idx.len(), ACT), &Device::Cpu).unwrap()
    } else {
        let v: Vec<u32> = idx.iter().map(|&i| data.act_u32[i]).collect();
        Tensor::from_vec(v, idx.len(), &Device::Cpu).unwrap()
    }
}

#[test]
fn behaviour_model_nll_and_gradients_match_candle() {
    behaviour_parity(Cpu);
    behaviour_parity(Candle::cpu());
}

fn behaviour_parity<B: Backend>(be: B) {
    for discrete in [false, true] {
        let data = logged(discrete);
        let cfg = BehaviorConfig {
            hidden: vec![16, 16],
            steps: 20,
            batch_size: 32,
            lr: 1e-2,
        };
        let model = BehaviorModel::fit_on(be.clone(), &data, &cfg, 5).unwrap();
        let idx = rows(&data, 24, 11);
        let probe = model.probe(&data, &idx).unwrap();
        // The probe changes nothing.
        assert_eq!(model.probe(&data, &idx).unwrap().loss, probe.loss);
        let out = if discrete { N } else { 2 * ACT };
        let (net, store) = candle_net(&model.params().unwrap(), "behavior", |vb| {
            Mlp::new(vb, OBS, &cfg.hidden, out)
        });
        let x = Tensor::from_vec(probe.input.clone(), (idx.len(), OBS), &Device::Cpu).unwrap();
        let f = net.forward(&x).unwrap();
        let a = actions_of(&data, &idx);
        let lp = if discrete {
            candle_nn::ops::log_softmax(&f, D::Minus1)
                .unwrap()
                .gather(&a.unsqueeze(1).unwrap(), 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
        } else {
            let m = f.narrow(1, 0, ACT).unwrap();
            let ls = f.narrow(1, ACT, ACT).unwrap().clamp(-5f32, 2f32).unwrap();
            normal_log_prob(&a, &m, &ls).unwrap()
        };
        let nll = lp.mean_all().unwrap().neg().unwrap();
        assert_parity(
            &format!("behaviour (discrete {discrete}, {})", be.name()),
            &probe,
            &nll,
            &store,
        );
        // The fitted log-probabilities are the same network's.
        let all = model.log_probs(&data).unwrap();
        let lpv: Vec<f32> = lp.to_vec1().unwrap();
        for (b, &i) in idx.iter().enumerate() {
            assert!((all[i] - f64::from(lpv[b])).abs() < 1e-4 * (1.0 + all[i].abs()));
        }
    }
}

#[test]
fn fqe_td_loss_and_gradients_match_candle() {
    fqe_parity(Cpu);
    fqe_parity(Candle::cpu());
}

fn fqe_parity<B: Backend>(be: B) {
    for discrete in [false, true] {
        let data = logged(discrete);
        let cfg = FqeConfig {
            hidden: vec![16, 16],
            steps: Some(30),
            batch_size: 32,
            lr: 1e-3,
            target_update_interval: 20,
            action_samples: 3,
        };
        let fqe = Fqe::fit_on(be.clone(), &data, &mut Fixed { discrete }, 0.9, &cfg, 5).unwrap();
        let idx = rows(&data, 24, 12);
        let probe = fqe.probe(&data, &idx).unwrap();
        assert_eq!(probe.target.len(), idx.len());
        let (width, out) = if discrete {
            (OBS + 1, N)
        } else {
            (OBS + 1 + ACT, 1)
        };
        let (net, store) = candle_net(&fqe.params().unwrap(), "fqe", |vb| {
            Mlp::new(vb, width, &cfg.hidden, out)
        });
        let x = Tensor::from_vec(probe.input.clone(), (idx.len(), width), &Device::Cpu).unwrap();
        let f = net.forward(&x).unwrap();
        let q = if discrete {
            f.gather(&actions_of(&data, &idx).unsqueeze(1).unwrap(), 1)
                .unwrap()
                .squeeze(1)
                .unwrap()
        } else {
            f.squeeze(1).unwrap()
        };
        let y = Tensor::from_vec(probe.target.clone(), idx.len(), &Device::Cpu).unwrap();
        let loss = (q.clone() - y).unwrap().sqr().unwrap().mean_all().unwrap();
        assert_parity(
            &format!("FQE (discrete {discrete}, {})", be.name()),
            &probe,
            &loss,
            &store,
        );
        // Q at the logged actions as the estimators read it.
        let (qa, _) = fqe.q_and_v(&data).unwrap();
        let qv: Vec<f32> = q.to_vec1().unwrap();
        for (b, &i) in idx.iter().enumerate() {
            assert!((qa[i] - f64::from(qv[b])).abs() < 1e-4 * (1.0 + qa[i].abs()));
        }
    }
}

#[test]
fn dynamics_ensemble_loss_and_gradients_match_candle() {
    model_parity(Cpu);
    model_parity(Candle::cpu());
}

fn model_parity<B: Backend>(be: B) {
    for discrete in [false, true] {
        let data = logged(discrete);
        let cfg = ModelConfig {
            members: 3,
            hidden: vec![16, 16],
            steps: 20,
            batch_size: 16,
            lr: 1e-3,
            ..ModelConfig::default()
        };
        let model = ProbabilisticEnsemble::fit_on(be.clone(), &data, &cfg, 5).unwrap();
        let b = 10;
        let mut idx = rows(&data, cfg.members * b, 13);
        // A terminating row in every member's batch, so the cross-entropy sees both classes.
        let term = (0..data.len()).find(|&i| data.terminals[i]).unwrap();
        for m in 0..cfg.members {
            idx[m * b] = term;
        }
        let probe = model.probe(&data, &idx).unwrap();
        let iw = OBS + if discrete { N } else { ACT };
        let ow = OBS + 1;
        let (net, store) = candle_net(&model.params().unwrap(), "model", |vb| {
            EnsembleMlp::new(vb, cfg.members, iw, &cfg.hidden, 2 * ow + 1)
        });
        let e = cfg.members;
        let x = Tensor::from_vec(probe.input.clone(), (e, b, iw), &Device::Cpu).unwrap();
        let y = Tensor::from_vec(probe.target.clone(), (e, b, ow), &Device::Cpu).unwrap();
        let d: Vec<f32> = idx
            .iter()
            .map(|&i| if data.terminals[i] { 1.0 } else { 0.0 })
            .collect();
        assert!(d.iter().any(|&d| d > 0.0), "the rows include a termination");
        let d = Tensor::from_vec(d, (e, b), &Device::Cpu).unwrap();
        let out = net.forward(&x).unwrap();
        let mean = out.narrow(2, 0, ow).unwrap();
        let ls = out
            .narrow(2, ow, ow)
            .unwrap()
            .clamp(-10f32, 0.5f32)
            .unwrap();
        let logit = out.narrow(2, 2 * ow, 1).unwrap().squeeze(2).unwrap();
        let z = ((y - mean).unwrap() / ls.exp().unwrap()).unwrap();
        let nll = ((z.sqr().unwrap() * 0.5).unwrap() + ls)
            .unwrap()
            .sum(D::Minus1)
            .unwrap();
        let bce = (softplus(&logit).unwrap() - (d * &logit).unwrap()).unwrap();
        let loss = (nll + bce).unwrap().mean_all().unwrap();
        assert_parity(
            &format!("model (discrete {discrete}, {})", be.name()),
            &probe,
            &loss,
            &store,
        );
    }
}

/// The loss `a` and `b` report after the same fit: equal within the parity tolerance's relative
/// part (1e-5 of the larger, with a floor of 1e-2 for losses near zero).
fn assert_loss_close(case: &str, a: f64, b: f64) {
    let tol = 1e-5 * a.abs().max(b.abs()).max(1e-2);
    assert!(
        (a - b).abs() <= tol,
        "{case}: loss {a} on the engine, {b} on candle"
    );
}

fn all_values(p: &Params) -> Vec<f32> {
    p.data().to_vec()
}

#[test]
fn the_models_fit_alike_on_the_engine_and_on_candle_tensors() {
    for discrete in [false, true] {
        let data = logged(discrete);
        let bcfg = BehaviorConfig {
            hidden: vec![16, 16],
            steps: 40,
            batch_size: 32,
            lr: 1e-2,
        };
        let (a, b) = (
            BehaviorModel::fit(&data, &bcfg, 7).unwrap(),
            BehaviorModel::fit_on(Candle::cpu(), &data, &bcfg, 7).unwrap(),
        );
        let case = format!("behaviour (discrete {discrete})");
        assert_loss_close(&case, a.final_nll, b.final_nll);
        assert_close(
            &case,
            "parameters",
            &all_values(&a.params().unwrap()),
            &all_values(&b.params().unwrap()),
        );
        let (la, lb) = (a.log_probs(&data).unwrap(), b.log_probs(&data).unwrap());
        let (la, lb): (Vec<f32>, Vec<f32>) = (
            la.iter().map(|&v| v as f32).collect(),
            lb.iter().map(|&v| v as f32).collect(),
        );
        assert_close(&case, "log-probabilities", &la, &lb);

        let fcfg = FqeConfig {
            hidden: vec![16, 16],
            steps: Some(60),
            batch_size: 32,
            lr: 1e-3,
            target_update_interval: 20,
            action_samples: 3,
        };
        let (a, b) = (
            Fqe::fit(&data, &mut Fixed { discrete }, 0.9, &fcfg, 7).unwrap(),
            Fqe::fit_on(Candle::cpu(), &data, &mut Fixed { discrete }, 0.9, &fcfg, 7).unwrap(),
        );
        let case = format!("FQE (discrete {discrete})");
        assert_loss_close(&case, a.final_loss, b.final_loss);
        assert_close(
            &case,
            "parameters",
            &all_values(&a.params().unwrap()),
            &all_values(&b.params().unwrap()),
        );
        let to32 = |v: Vec<f64>| -> Vec<f32> { v.into_iter().map(|x| x as f32).collect() };
        assert_close(
            &case,
            "initial values",
            &to32(a.initial_values(&data).unwrap()),
            &to32(b.initial_values(&data).unwrap()),
        );
        let (fa, fb) = (a.fit.unwrap(), b.fit.unwrap());
        assert_eq!((fa.steps, fa.iterations), (fb.steps, fb.iterations));

        let mcfg = ModelConfig {
            members: 3,
            hidden: vec![16, 16],
            steps: 40,
            batch_size: 16,
            lr: 1e-3,
            ..ModelConfig::default()
        };
        let (a, b) = (
            ProbabilisticEnsemble::fit(&data, &mcfg, 7).unwrap(),
            ProbabilisticEnsemble::fit_on(Candle::cpu(), &data, &mcfg, 7).unwrap(),
        );
        let case = format!("model (discrete {discrete})");
        assert_loss_close(&case, a.final_loss, b.final_loss);
        assert_close(
            &case,
            "parameters",
            &all_values(&a.params().unwrap()),
            &all_values(&b.params().unwrap()),
        );
    }
}
