//! Gradient parity: every engine algorithm's losses and parameter gradients equal candle
//! autograd's, computed from the same parameters on the same random batch.
//!
//! Each case trains a few updates first (so that the parameters are not at their
//! initialisation), takes the algorithm's `probe` (losses and gradients at the current
//! parameters, state unchanged), then rebuilds the same networks as candle modules from the
//! algorithm's checkpoint tensors, writes each loss with candle ops as the paper states it, and
//! back-propagates.
//!
//! Tolerance: `orl_testkit::parity` (per tensor, relative to its largest element, with a
//! floor; the reasons are written there).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use orl_algos::{
    Algorithm, BatchTensors, Bc, BcConfig, BcLoss, Bcq, BcqConfig, Cql, CqlConfig, Iql, IqlConfig,
    Spec, Td3Bc, Td3BcConfig, advantage_weights, cql_logsumexp, expectile_loss, gather_actions,
    huber_loss, mse_per_member, td3bc_lambda,
};
use orl_algos::{Dqn, DqnConfig, Sac, SacConfig, soft_clipped_double_q};
use orl_data::{ActionSpace, Batch, Replay, ReplayConfig};
use orl_nets::engine::backend::Candle;
use orl_nets::{
    CategoricalActor, DeterministicActor, GaussianActor, Mlp, NetState, ParamStore, QEnsemble,
    TanhGaussianActor, Vae, Vb,
};
use orl_testkit::parity::assert_grads_match;
use rand::SeedableRng;

fn replay(discrete: bool) -> (Spec, Replay) {
    let (spec, space) = if discrete {
        (Spec::discrete(5, 3), ActionSpace::Discrete { n: 3 })
    } else {
        (
            Spec::continuous(5, 2, 1.0),
            ActionSpace::Continuous {
                dim: 2,
                low: None,
                high: None,
            },
        )
    };
    let ds = common::synthetic(5, space, 20, 25, 3);
    (spec, Replay::new(ds, ReplayConfig::default(), 5).unwrap())
}

/// A candle module over a fresh store, loaded from `algo`'s checkpoint tensors of `net`.
fn candle_net<M>(
    algo: &dyn Algorithm,
    net: &str,
    build: impl FnOnce(&mut Vb<'_>) -> orl_nets::Result<M>,
) -> (M, ParamStore) {
    let mut store = ParamStore::new(Device::Cpu);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(99);
    let m = build(&mut store.builder("", &mut rng)).unwrap();
    let tensors: HashMap<String, Tensor> = algo
        .nets()
        .into_iter()
        .find(|(n, _)| *n == net)
        .unwrap()
        .1
        .named_tensors("")
        .into_iter()
        .collect();
    NetState::load_named(&mut store, &tensors, "").unwrap();
    (m, store)
}

/// Compares the engine's probe of `loss` on `net` with candle's `loss` tensor and its
/// gradients with respect to `store` (`orl_testkit::parity`).
fn assert_parity(
    case: &str,
    probes: &[orl_algos::Probe],
    loss: &str,
    oracle: &Tensor,
    store: &ParamStore,
) {
    // The probe of this loss whose parameters are the store's (one loss can train two
    // networks, as discrete BCQ's).
    let p = probes
        .iter()
        .find(|p| p.loss == loss && p.grads.iter().all(|(n, _)| store.get(n).is_some()))
        .unwrap_or_else(|| panic!("{case}: no probe of {loss} for these parameters"));
    let what = format!("{loss} ({})", p.net);
    assert_grads_match(case, &what, p.value, &p.grads, oracle, store, false);
}

fn warm_batch(replay: &mut Replay, algo: &mut dyn Algorithm, n: usize) -> Batch {
    for _ in 0..5 {
        algo.update(&replay.sample(n)).unwrap();
    }
    replay.sample(n)
}

#[test]
fn bc_gradients_match_autograd_for_every_loss() {
    for (discrete, loss) in [
        (false, BcLoss::Mse),
        (false, BcLoss::Nll),
        (true, BcLoss::Mse),
    ] {
        let case = format!("bc discrete={discrete} {loss:?}");
        let (spec, mut rp) = replay(discrete);
        let cfg = BcConfig {
            hidden: vec![16, 16],
            loss,
            ..BcConfig::default()
        };
        let mut algo = Bc::new(spec.clone(), cfg.clone(), 0, &Device::Cpu).unwrap();
        let batch = warm_batch(&mut rp, &mut algo, 64);
        let probes = algo.probe(&batch).unwrap();
        // The same probe on the candle backend, from the same (warmed) parameters.
        let on_candle = Some(()).map(|()| {
            let mut c =
                Bc::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 0, &Device::Cpu).unwrap();
            let state: HashMap<String, Tensor> = algo
                .nets()
                .into_iter()
                .flat_map(|(n, s)| s.named_tensors(&format!("{n}.")))
                .collect();
            for (n, s) in c.nets_mut() {
                s.load_named(&state, &format!("{n}.")).unwrap();
            }
            c.probe(&batch).unwrap()
        });
        let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
        let h = cfg.hidden.clone();
        let (od, ad) = (spec.obs_dim, 2);
        let (l, store) = match (discrete, loss) {
            (true, _) => {
                let (m, store) = candle_net(&algo, "policy", |vb| {
                    CategoricalActor::new(&mut vb.pp("policy"), od, 3, &h)
                });
                let lp = gather_actions(&m.log_probs(&b.s).unwrap(), &b.a).unwrap();
                (lp.neg().unwrap().mean_all().unwrap(), store)
            }
            (false, BcLoss::Mse) => {
                let (m, store) = candle_net(&algo, "policy", |vb| {
                    DeterministicActor::new(&mut vb.pp("policy"), od, ad, &h, 1.0)
                });
                let d = (m.forward(&b.s).unwrap() - &b.a).unwrap();
                (d.sqr().unwrap().mean_all().unwrap(), store)
            }
            (false, BcLoss::Nll) => {
                let (m, store) = candle_net(&algo, "policy", |vb| {
                    GaussianActor::new(&mut vb.pp("policy"), od, ad, &h, 1.0)
                });
                let lp = m.log_prob(&b.s, &b.a).unwrap();
                (lp.neg().unwrap().mean_all().unwrap(), store)
            }
        };
        assert_parity(&case, &probes, "actor_loss", &l, &store);
        if let Some(probes) = on_candle {
            // candle's autograd of the loss again (backward consumed nothing of `l`'s graph).
            assert_parity(
                &format!("{case} (candle backend)"),
                &probes,
                "actor_loss",
                &l,
                &store,
            );
        }
    }
}

/// Every network's parameters of `algo`, flattened in checkpoint order.
fn flat_params(algo: &dyn Algorithm) -> Vec<f32> {
    algo.nets()
        .into_iter()
        .flat_map(|(n, s)| s.named_tensors(&format!("{n}.")))
        .flat_map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect()
}

/// `candle` (an algorithm on the candle backend) follows `engine` (the same algorithm, seed and
/// settings on the CPU engine): `steps` updates on the same batches give the same metrics and,
/// at the end, the same parameters of every network (targets included), within the parity
/// tolerance, which the two backends' summation orders need. Also checks that training moved
/// the parameters away from `fresh`'s.
fn assert_trains_alike(
    case: &str,
    rp: &mut Replay,
    engine: &mut dyn Algorithm,
    candle: &mut dyn Algorithm,
    fresh: &dyn Algorithm,
    steps: usize,
) {
    assert_eq!(
        flat_params(engine),
        flat_params(candle),
        "{case}: the same initial parameters"
    );
    for step in 0..steps {
        let b = rp.sample(64);
        let (x, y) = (engine.update(&b).unwrap(), candle.update(&b).unwrap());
        let (x, y) = (x.to_map(), y.to_map());
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>(),
            "{case}"
        );
        for (k, &v) in &x {
            // A metric that is a mean of terms of both signs (the mean advantage) cancels to
            // near zero, so its error is measured against the size of one term, about 1e-2
            // here, not against its own value.
            let tol = orl_testkit::parity::RTOL * v.abs().max(1e-2);
            assert!(
                (v - y[k]).abs() <= tol,
                "{case}: update {step}: {k}: {} against {v}",
                y[k]
            );
        }
    }
    let a = flat_params(engine);
    orl_testkit::parity::assert_close(
        case,
        &format!("parameters after {steps} updates"),
        &a,
        &flat_params(candle),
    );
    assert_ne!(a, flat_params(fresh), "{case}: training changed nothing");
}

/// BC trained on the candle backend follows the engine, for each of its losses (MSE and
/// Gaussian NLL on continuous actions, cross-entropy on discrete ones).
#[test]
fn bc_trains_alike_on_the_engine_and_on_candle_tensors() {
    for (discrete, loss) in [
        (false, BcLoss::Mse),
        (false, BcLoss::Nll),
        (true, BcLoss::Mse),
    ] {
        let case = format!("bc discrete={discrete} {loss:?}");
        let (spec, mut rp) = replay(discrete);
        let cfg = BcConfig {
            hidden: vec![32, 32],
            loss,
            ..BcConfig::default()
        };
        let mut engine = Bc::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let mut candle =
            Bc::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let fresh = Bc::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        assert_trains_alike(&case, &mut rp, &mut engine, &mut candle, &fresh, 50);
    }
}

/// IQL on the candle backend follows the engine over 50 updates (the policy's cosine
/// schedule included), for continuous and discrete actions.
#[test]
fn iql_trains_alike_on_the_engine_and_on_candle_tensors() {
    for discrete in [false, true] {
        let case = format!("iql discrete={discrete}");
        let (spec, mut rp) = replay(discrete);
        let cfg = IqlConfig {
            hidden: vec![32, 32],
            actor_cosine_steps: Some(60),
            ..IqlConfig::default()
        };
        let mut engine = Iql::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let mut candle =
            Iql::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let fresh = Iql::new(spec, cfg, 4, &Device::Cpu).unwrap();
        assert_trains_alike(&case, &mut rp, &mut engine, &mut candle, &fresh, 50);
    }
}

/// DQN on the candle backend follows the engine over 50 updates with hard target copies every
/// 7, double and plain targets.
#[test]
fn dqn_trains_alike_on_the_engine_and_on_candle_tensors() {
    for double in [true, false] {
        let case = format!("dqn double={double}");
        let (spec, mut rp) = replay(true);
        let cfg = DqnConfig {
            hidden: vec![32, 32],
            double,
            target_update_interval: 7,
            ..DqnConfig::default()
        };
        let mut engine = Dqn::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let mut candle =
            Dqn::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let fresh = Dqn::new(spec, cfg, 4, &Device::Cpu).unwrap();
        assert_trains_alike(&case, &mut rp, &mut engine, &mut candle, &fresh, 50);
    }
}

/// SAC on the candle backend follows the engine over 50 updates (its temperature included),
/// with a bound of 2 so that the squashing's scale acts.
#[test]
fn sac_trains_alike_on_the_engine_and_on_candle_tensors() {
    let (_, mut rp) = replay(false);
    let spec = Spec::continuous(5, 2, 2.0);
    let cfg = SacConfig {
        hidden: vec![32, 32],
        ..SacConfig::default()
    };
    let mut engine = Sac::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
    let mut candle =
        Sac::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
    let fresh = Sac::new(spec, cfg, 4, &Device::Cpu).unwrap();
    assert_trains_alike("sac", &mut rp, &mut engine, &mut candle, &fresh, 50);
}

/// CQL on the candle backend follows the engine over 40 updates: continuous (plain, and with
/// the Lagrange multiplier, the entropy backup and a temperature) and discrete.
#[test]
fn cql_trains_alike_on_the_engine_and_on_candle_tensors() {
    for (discrete, lagrange) in [(false, false), (false, true), (true, false)] {
        let case = format!("cql discrete={discrete} lagrange={lagrange}");
        let (_, mut rp) = replay(discrete);
        let spec = if discrete {
            Spec::discrete(5, 3)
        } else {
            Spec::continuous(5, 2, 2.0)
        };
        let cfg = CqlConfig {
            hidden: vec![32, 32],
            n_actions: 3,
            target_action_gap: lagrange.then_some(1.0),
            backup_entropy: lagrange,
            temperature: if lagrange { 0.7 } else { 1.0 },
            target_update_interval: 7,
            ..CqlConfig::default()
        };
        let mut engine = Cql::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let mut candle =
            Cql::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let fresh = Cql::new(spec, cfg, 4, &Device::Cpu).unwrap();
        assert_trains_alike(&case, &mut rp, &mut engine, &mut candle, &fresh, 40);
    }
}

/// BCQ on the candle backend follows the engine over 40 updates, continuous (with a large
/// perturbation so that the action clip acts) and discrete.
#[test]
fn bcq_trains_alike_on_the_engine_and_on_candle_tensors() {
    for discrete in [false, true] {
        let case = format!("bcq discrete={discrete}");
        let (_, mut rp) = replay(discrete);
        let spec = if discrete {
            Spec::discrete(5, 3)
        } else {
            Spec::continuous(5, 2, 2.0)
        };
        let cfg = BcqConfig {
            hidden: vec![32, 32],
            vae_hidden: vec![24, 24],
            n_samples: 4,
            n_act_samples: 5,
            phi: 0.5,
            ..BcqConfig::default()
        };
        let mut engine = Bcq::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let mut candle =
            Bcq::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
        let fresh = Bcq::new(spec, cfg, 4, &Device::Cpu).unwrap();
        assert_trains_alike(&case, &mut rp, &mut engine, &mut candle, &fresh, 40);
    }
}

/// TD3+BC on the candle backend follows the engine over 50 updates (25 actor updates and
/// target moves), with a bound of 2 so that the noise clipping and the BC term's scale act.
#[test]
fn td3bc_trains_alike_on_the_engine_and_on_candle_tensors() {
    let (_, mut rp) = replay(false);
    let spec = Spec::continuous(5, 2, 2.0);
    let cfg = Td3BcConfig {
        hidden: vec![32, 32],
        ..Td3BcConfig::default()
    };
    let mut engine = Td3Bc::new(spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
    let mut candle =
        Td3Bc::new_on(Candle::cpu(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
    let fresh = Td3Bc::new(spec, cfg, 4, &Device::Cpu).unwrap();
    assert_trains_alike("td3bc", &mut rp, &mut engine, &mut candle, &fresh, 50);
}

/// TD3+BC's losses and gradients against autograd, on the engine and on the candle backend.
#[test]
fn td3bc_gradients_match_autograd() {
    td3bc_parity(orl_nets::engine::backend::Cpu);
    td3bc_parity(Candle::cpu());
}

fn td3bc_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    for unit in [true, false] {
        let case = format!("td3bc bc_unit_actions={unit} on {}", be.name());
        let (_, mut rp) = replay(false);
        // A bound of 2 so that the BC term's scaling and the clipping are exercised.
        let spec = Spec::continuous(5, 2, 2.0);
        let cfg = Td3BcConfig {
            hidden: vec![16, 16],
            bc_unit_actions: unit,
            ..Td3BcConfig::default()
        };
        let mut algo =
            Td3Bc::new_on(be.clone(), spec.clone(), cfg.clone(), 1, &Device::Cpu).unwrap();
        let batch = warm_batch(&mut rp, &mut algo, 64);
        let mut noise = algo.noise().clone();
        let probes = algo.probe(&batch).unwrap();
        let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
        let h = cfg.hidden.clone();
        let (od, ad, m) = (5, 2, 2.0);
        let (actor, actor_store) = candle_net(&algo, "actor", |vb| {
            DeterministicActor::new(vb, od, ad, &h, m)
        });
        let (actor_t, _) = candle_net(&algo, "actor_target", |vb| {
            DeterministicActor::new(vb, od, ad, &h, m)
        });
        let (critic, critic_store) = candle_net(&algo, "critic", |vb| {
            QEnsemble::continuous(vb, 2, od, ad, &h)
        });
        let (critic_t, _) = candle_net(&algo, "critic_target", |vb| {
            QEnsemble::continuous(vb, 2, od, ad, &h)
        });
        // Critic: y = r + gamma^k (1 - d) min Q'(s', clip(pi'(s') + clip(noise), -m, m)).
        let eps = noise.normal(&[64, ad]).unwrap();
        let noise_t = (eps * (cfg.policy_noise * m))
            .unwrap()
            .clamp(-cfg.noise_clip * m, cfg.noise_clip * m)
            .unwrap();
        let a2 = (actor_t.forward(&b.s2).unwrap() + noise_t)
            .unwrap()
            .clamp(-m, m)
            .unwrap();
        let q2 = critic_t.q(&b.s2, &a2).unwrap().min(0).unwrap();
        let y = b.td_target(&q2).unwrap().detach();
        let q = critic.q(&b.s, &b.a).unwrap();
        let critic_loss = mse_per_member(&q, &y).unwrap().sum_all().unwrap();
        assert_parity(&case, &probes, "critic_loss", &critic_loss, &critic_store);
        // Actor: -lambda mean Q_1(s, pi(s)) + mean ((pi(s) - a) / m')^2.
        let pi = actor.forward(&b.s).unwrap();
        let q1 = critic.q(&b.s, &pi).unwrap().get(0).unwrap();
        let lambda = td3bc_lambda(&q1, cfg.alpha).unwrap();
        let mm = if unit { m } else { 1.0 };
        let bc = ((&pi - &b.a).unwrap() / mm)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let actor_loss = ((q1.mean_all().unwrap() * &lambda).unwrap().neg().unwrap() + bc).unwrap();
        assert_parity(&case, &probes, "actor_loss", &actor_loss, &actor_store);
    }
}

/// `Q_e(s, a)` of every member `[E, B]`: continuous, or gathered at the data action.
fn q_members(q: &QEnsemble, b: &BatchTensors, discrete: bool) -> Tensor {
    if discrete {
        let all = q.q_all(&b.s).unwrap();
        let (e, n, _) = all.dims3().unwrap();
        let idx =
            b.a.unsqueeze(0)
                .unwrap()
                .unsqueeze(2)
                .unwrap()
                .broadcast_as((e, n, 1))
                .unwrap()
                .contiguous()
                .unwrap();
        all.gather(&idx, 2).unwrap().squeeze(2).unwrap()
    } else {
        q.q(&b.s, &b.a).unwrap()
    }
}

#[test]
fn iql_gradients_match_autograd() {
    iql_parity(orl_nets::engine::backend::Cpu);
    iql_parity(Candle::cpu());
}

/// IQL's three losses and gradients against autograd on backend `be`.
fn iql_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    for discrete in [false, true] {
        let case = format!("iql discrete={discrete} on {}", be.name());
        let (spec, mut rp) = replay(discrete);
        let cfg = IqlConfig {
            hidden: vec![16, 16],
            // A small beta keeps exp(beta u) under the cap for most rows and some at it.
            beta: 3.0,
            max_weight: 1.5,
            ..IqlConfig::default()
        };
        let mut algo = Iql::new_on(be.clone(), spec.clone(), cfg.clone(), 2, &Device::Cpu).unwrap();
        let batch = warm_batch(&mut rp, &mut algo, 64);
        let probes = algo.probe(&batch).unwrap();
        let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
        let h = cfg.hidden.clone();
        let od = 5;
        let build_q = |vb: &mut Vb<'_>| {
            if discrete {
                QEnsemble::discrete(vb, 2, od, 3, &h)
            } else {
                QEnsemble::continuous(vb, 2, od, 2, &h)
            }
        };
        let (critic, critic_store) = candle_net(&algo, "critic", build_q);
        let (critic_t, _) = candle_net(&algo, "critic_target", build_q);
        let (value, value_store) = candle_net(&algo, "value", |vb| Mlp::new(vb, od, &h, 1));
        // Eq. 5.
        let q_t = q_members(&critic_t, &b, discrete).min(0).unwrap().detach();
        let v = value.forward(&b.s).unwrap().squeeze(1).unwrap();
        let adv = (q_t - &v).unwrap();
        let value_loss = expectile_loss(&adv, cfg.expectile).unwrap();
        assert_parity(&case, &probes, "value_loss", &value_loss, &value_store);
        // Eq. 6 with V(s') before the value step.
        let v_next = value.forward(&b.s2).unwrap().squeeze(1).unwrap().detach();
        let y = b.td_target(&v_next).unwrap().detach();
        let q = q_members(&critic, &b, discrete);
        let critic_loss = mse_per_member(&q, &y).unwrap().sum_all().unwrap();
        assert_parity(&case, &probes, "critic_loss", &critic_loss, &critic_store);
        // Eq. 7.
        let w = advantage_weights(&adv.detach(), cfg.beta, cfg.max_weight).unwrap();
        let (lp, actor_store) = if discrete {
            let (m, st) = candle_net(&algo, "actor", |vb| CategoricalActor::new(vb, od, 3, &h));
            (
                gather_actions(&m.log_probs(&b.s).unwrap(), &b.a).unwrap(),
                st,
            )
        } else {
            let (m, st) =
                candle_net(&algo, "actor", |vb| {
                    Ok(GaussianActor::new(vb, od, 2, &h, 1.0)?
                        .with_log_std_min(cfg.log_std_min as f32))
                });
            (m.log_prob(&b.s, &b.a).unwrap(), st)
        };
        let actor_loss = (w * lp).unwrap().neg().unwrap().mean_all().unwrap();
        assert_parity(&case, &probes, "actor_loss", &actor_loss, &actor_store);
    }
}

/// Rows of `x: [B, d]` repeated `n` times each.
fn repeat(x: &Tensor, n: usize) -> Tensor {
    let (b, d) = x.dims2().unwrap();
    x.unsqueeze(1)
        .unwrap()
        .broadcast_as((b, n, d))
        .unwrap()
        .reshape((b * n, d))
        .unwrap()
}

#[test]
fn cql_gradients_match_autograd() {
    cql_parity(orl_nets::engine::backend::Cpu);
    cql_parity(Candle::cpu());
}

/// Continuous CQL's losses (with and without the Lagrange multiplier and the entropy backup)
/// against autograd on backend `be`.
fn cql_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    for (lagrange, backup_entropy) in [(None, false), (Some(1.0), true)] {
        let case = format!(
            "cql lagrange={lagrange:?} backup_entropy={backup_entropy} on {}",
            be.name()
        );
        let (_, mut rp) = replay(false);
        let spec = Spec::continuous(5, 2, 2.0);
        let cfg = CqlConfig {
            hidden: vec![16, 16],
            n_actions: 3,
            target_action_gap: lagrange,
            backup_entropy,
            temperature: 0.7,
            ..CqlConfig::default()
        };
        let mut algo = Cql::new_on(be.clone(), spec.clone(), cfg.clone(), 3, &Device::Cpu).unwrap();
        let batch = warm_batch(&mut rp, &mut algo, 32);
        let mut noise = algo.noise().clone();
        let probes = algo.probe(&batch).unwrap();
        let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
        let (h, od, ad, m, n, bsz) = (cfg.hidden.clone(), 5, 2, 2.0, 3, 32);
        let (actor, actor_store) = candle_net(&algo, "actor", |vb| {
            TanhGaussianActor::new(vb, od, ad, &h, m)
        });
        let (critic, critic_store) = candle_net(&algo, "critic", |vb| {
            QEnsemble::continuous(vb, 2, od, ad, &h)
        });
        let (critic_t, _) = candle_net(&algo, "critic_target", |vb| {
            QEnsemble::continuous(vb, 2, od, ad, &h)
        });
        let scalar = |name: &str| {
            let t = algo
                .nets()
                .into_iter()
                .find(|(k, _)| *k == name)
                .unwrap()
                .1
                .named_tensors("");
            let mut st = ParamStore::new(Device::Cpu);
            st.insert(t[0].0.clone(), t[0].1.clone()).unwrap();
            st
        };
        let (la_store, lap_store) = (scalar("log_alpha"), scalar("log_alpha_prime"));
        let la = la_store.get("log_alpha").unwrap().as_tensor().clone();
        let lap = lap_store
            .get("log_alpha_prime")
            .unwrap()
            .as_tensor()
            .clone();
        // The draws, in the algorithm's order.
        let e_t = noise.normal(&[bsz, ad]).unwrap();
        let e_c = noise.normal(&[bsz * n, ad]).unwrap();
        let e_n = noise.normal(&[bsz * n, ad]).unwrap();
        let unif = noise.uniform(&[bsz * n, ad], -2.0, 2.0).unwrap();
        let e_a = noise.normal(&[bsz, ad]).unwrap();
        let alpha = la.exp().unwrap().detach();
        let (a2, lp2) = actor.sample_with(&b.s2, &e_t).unwrap();
        let mut v2 = critic_t.q(&b.s2, &a2).unwrap().min(0).unwrap();
        if backup_entropy {
            v2 = (v2 - lp2.broadcast_mul(&alpha).unwrap()).unwrap();
        }
        let y = b.td_target(&v2).unwrap().detach();
        let q = critic.q(&b.s, &b.a).unwrap();
        let td = mse_per_member(&q, &y).unwrap();
        let s_rep = repeat(&b.s, n);
        let (a_cur, lp_cur) = actor.sample_with(&s_rep, &e_c).unwrap();
        let (a_next, lp_next) = actor.sample_with(&repeat(&b.s2, n), &e_n).unwrap();
        let q_rand = critic.q(&s_rep, &unif).unwrap();
        let q_cur = critic.q(&s_rep, &a_cur.detach()).unwrap();
        let q_next = critic.q(&s_rep, &a_next.detach()).unwrap();
        let log_unif = 2.0 * (0.5f64 / m).ln();
        let lse = cql_logsumexp(
            &q_rand,
            &q_next,
            &q_cur,
            &lp_next,
            &lp_cur,
            log_unif,
            n,
            cfg.temperature,
        )
        .unwrap();
        let gap = (lse - &q).unwrap().mean(1).unwrap();
        let (penalty, lag) = match lagrange {
            None => ((&gap * cfg.cql_alpha).unwrap(), None),
            Some(target) => {
                let ap = lap.exp().unwrap().clamp(0.0, 1e6).unwrap();
                let pen = ((&gap - target)
                    .unwrap()
                    .broadcast_mul(&ap.detach())
                    .unwrap()
                    * cfg.cql_alpha)
                    .unwrap();
                let lag = ((gap.detach() - target).unwrap().broadcast_mul(&ap).unwrap()
                    * (-0.5 * cfg.cql_alpha))
                    .unwrap()
                    .sum_all()
                    .unwrap();
                (pen, Some(lag))
            }
        };
        let critic_loss = (td + penalty).unwrap().sum_all().unwrap();
        assert_parity(&case, &probes, "critic_loss", &critic_loss, &critic_store);
        if let Some(lag) = lag {
            assert_parity(&case, &probes, "alpha_prime_loss", &lag, &lap_store);
        }
        let (a, lp) = actor.sample_with(&b.s, &e_a).unwrap();
        let qa = critic.q(&b.s, &a).unwrap().min(0).unwrap();
        let actor_loss = (lp.broadcast_mul(&alpha).unwrap() - qa)
            .unwrap()
            .mean_all()
            .unwrap();
        assert_parity(&case, &probes, "actor_loss", &actor_loss, &actor_store);
        let alpha_loss = la
            .broadcast_mul(&(lp.detach() - 2.0).unwrap())
            .unwrap()
            .neg()
            .unwrap()
            .mean_all()
            .unwrap();
        assert_parity(&case, &probes, "alpha_loss", &alpha_loss, &la_store);
    }
}

#[test]
fn discrete_cql_gradients_match_autograd() {
    discrete_cql_parity(orl_nets::engine::backend::Cpu);
    discrete_cql_parity(Candle::cpu());
}

fn discrete_cql_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    let case = format!("discrete cql on {}", be.name());
    let (spec, mut rp) = replay(true);
    let cfg = CqlConfig {
        hidden: vec![16, 16],
        ..CqlConfig::default()
    };
    let mut algo = Cql::new_on(be.clone(), spec.clone(), cfg.clone(), 4, &Device::Cpu).unwrap();
    let batch = warm_batch(&mut rp, &mut algo, 64);
    let probes = algo.probe(&batch).unwrap();
    let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
    let h = cfg.hidden.clone();
    let (critic, store) = candle_net(&algo, "critic", |vb| QEnsemble::discrete(vb, 1, 5, 3, &h));
    let (critic_t, _) = candle_net(&algo, "critic_target", |vb| {
        QEnsemble::discrete(vb, 1, 5, 3, &h)
    });
    let q_all = critic.q_all(&b.s).unwrap().get(0).unwrap();
    let q = gather_actions(&q_all, &b.a).unwrap();
    let a2 = critic
        .q_all(&b.s2)
        .unwrap()
        .get(0)
        .unwrap()
        .argmax(candle_core::D::Minus1)
        .unwrap();
    let q2 = gather_actions(&critic_t.q_all(&b.s2).unwrap().get(0).unwrap(), &a2).unwrap();
    let y = b.td_target(&q2).unwrap().detach();
    let gap = (q_all.log_sum_exp(candle_core::D::Minus1).unwrap() - &q)
        .unwrap()
        .mean_all()
        .unwrap();
    let loss = (huber_loss(&q, &y).unwrap() + (gap * cfg.discrete_cql_alpha).unwrap()).unwrap();
    assert_parity(&case, &probes, "critic_loss", &loss, &store);
}

#[test]
fn bcq_gradients_match_autograd() {
    bcq_parity(orl_nets::engine::backend::Cpu);
    bcq_parity(Candle::cpu());
}

/// Continuous BCQ's VAE, critic and actor losses against autograd on backend `be`.
fn bcq_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    let case = format!("bcq on {}", be.name());
    let case = case.as_str();
    let (_, mut rp) = replay(false);
    let spec = Spec::continuous(5, 2, 2.0);
    let cfg = BcqConfig {
        hidden: vec![16, 16],
        vae_hidden: vec![24, 24],
        n_samples: 4,
        ..BcqConfig::default()
    };
    let mut algo = Bcq::new_on(be.clone(), spec.clone(), cfg.clone(), 5, &Device::Cpu).unwrap();
    let batch = warm_batch(&mut rp, &mut algo, 32);
    let mut noise = algo.noise().clone();
    let probes = algo.probe(&batch).unwrap();
    let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
    let (h, od, ad, lat, m, n, bsz) = (cfg.hidden.clone(), 5, 2, 4, 2.0, 4, 32);
    let (vae, vae_store) = candle_net(&algo, "vae", |vb| {
        Vae::new(vb, od, ad, lat, &cfg.vae_hidden, m)
    });
    let xi = |net: &Mlp, s: &Tensor, a: &Tensor| {
        let f = net
            .forward(&Tensor::cat(&[s, a], 1).unwrap())
            .unwrap()
            .tanh()
            .unwrap();
        ((f * (cfg.phi * m)).unwrap() + a)
            .unwrap()
            .clamp(-m, m)
            .unwrap()
    };
    let (actor, actor_store) = candle_net(&algo, "actor", |vb| Mlp::new(vb, od + ad, &h, ad));
    let (actor_t, _) = candle_net(&algo, "actor_target", |vb| Mlp::new(vb, od + ad, &h, ad));
    let (critic, critic_store) = candle_net(&algo, "critic", |vb| {
        QEnsemble::continuous(vb, 2, od, ad, &h)
    });
    let (critic_t, _) = candle_net(&algo, "critic_target", |vb| {
        QEnsemble::continuous(vb, 2, od, ad, &h)
    });
    let out = vae.forward(&b.s, &b.a, &mut noise).unwrap();
    let vae_loss = Vae::loss(&out, &b.a).unwrap();
    assert_parity(case, &probes, "vae_loss", &vae_loss, &vae_store);
    let z_next = noise
        .normal(&[bsz * n, lat])
        .unwrap()
        .clamp(-0.5f32, 0.5f32)
        .unwrap();
    let s2 = repeat(&b.s2, n);
    let a2 = xi(&actor_t, &s2, &vae.decode_z(&s2, &z_next).unwrap());
    let q2 = critic_t.q(&s2, &a2).unwrap();
    let v2 = soft_clipped_double_q(&q2, cfg.lambda)
        .unwrap()
        .reshape((bsz, n))
        .unwrap()
        .max(1)
        .unwrap();
    let y = b.td_target(&v2).unwrap().detach();
    let critic_loss = mse_per_member(&critic.q(&b.s, &b.a).unwrap(), &y)
        .unwrap()
        .sum_all()
        .unwrap();
    assert_parity(case, &probes, "critic_loss", &critic_loss, &critic_store);
    let z = noise
        .normal(&[bsz, lat])
        .unwrap()
        .clamp(-0.5f32, 0.5f32)
        .unwrap();
    let sampled = vae.decode_z(&b.s, &z).unwrap().detach();
    let a = xi(&actor, &b.s, &sampled);
    let actor_loss = critic
        .q(&b.s, &a)
        .unwrap()
        .get(0)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap();
    assert_parity(case, &probes, "actor_loss", &actor_loss, &actor_store);
}

#[test]
fn discrete_bcq_gradients_match_autograd() {
    discrete_bcq_parity(orl_nets::engine::backend::Cpu);
    discrete_bcq_parity(Candle::cpu());
}

/// Discrete BCQ's one loss against autograd for both its networks, on backend `be`.
fn discrete_bcq_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    let case = format!("discrete bcq on {}", be.name());
    let case = case.as_str();
    let (spec, mut rp) = replay(true);
    let cfg = BcqConfig {
        hidden: vec![16, 16],
        ..BcqConfig::default()
    };
    let mut algo = Bcq::new_on(be.clone(), spec.clone(), cfg.clone(), 6, &Device::Cpu).unwrap();
    let batch = warm_batch(&mut rp, &mut algo, 64);
    let probes = algo.probe(&batch).unwrap();
    let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
    let h = cfg.hidden.clone();
    let (critic, critic_store) =
        candle_net(&algo, "critic", |vb| QEnsemble::discrete(vb, 1, 5, 3, &h));
    let (critic_t, _) = candle_net(&algo, "critic_target", |vb| {
        QEnsemble::discrete(vb, 1, 5, 3, &h)
    });
    let (imitation, imitation_store) =
        candle_net(&algo, "imitation", |vb| CategoricalActor::new(vb, 5, 3, &h));
    let d = candle_core::D::Minus1;
    let q2 = critic.q_all(&b.s2).unwrap().get(0).unwrap();
    let lp2 = imitation.log_probs(&b.s2).unwrap();
    let ratio = lp2
        .broadcast_sub(&lp2.max_keepdim(d).unwrap())
        .unwrap()
        .exp()
        .unwrap();
    let allowed = ratio.gt(cfg.threshold).unwrap();
    let low = (q2.ones_like().unwrap() * -1e8).unwrap();
    let a2 = allowed.where_cond(&q2, &low).unwrap().argmax(d).unwrap();
    let q2t = gather_actions(&critic_t.q_all(&b.s2).unwrap().get(0).unwrap(), &a2).unwrap();
    let y = b.td_target(&q2t).unwrap().detach();
    let q = gather_actions(&critic.q_all(&b.s).unwrap().get(0).unwrap(), &b.a).unwrap();
    let logits = imitation.logits(&b.s).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, d).unwrap();
    let nll = gather_actions(&lp, &b.a)
        .unwrap()
        .neg()
        .unwrap()
        .mean_all()
        .unwrap();
    let loss = ((huber_loss(&q, &y).unwrap() + nll).unwrap()
        + (logits.sqr().unwrap().mean_all().unwrap() * 1e-2).unwrap())
    .unwrap();
    assert_parity(case, &probes, "critic_loss", &loss, &critic_store);
    assert_parity(case, &probes, "critic_loss", &loss, &imitation_store);
}

#[test]
fn sac_gradients_match_autograd() {
    sac_parity(orl_nets::engine::backend::Cpu);
    sac_parity(Candle::cpu());
}

/// SAC's critic, actor and temperature losses against autograd on backend `be`.
fn sac_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    let case = format!("sac on {}", be.name());
    let case = case.as_str();
    let (_, mut rp) = replay(false);
    let spec = Spec::continuous(5, 2, 2.0);
    let cfg = SacConfig {
        hidden: vec![16, 16],
        ..SacConfig::default()
    };
    let mut algo = Sac::new_on(be.clone(), spec.clone(), cfg.clone(), 7, &Device::Cpu).unwrap();
    let batch = warm_batch(&mut rp, &mut algo, 32);
    let mut noise = algo.noise().clone();
    let probes = algo.probe(&batch).unwrap();
    let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
    let (h, od, ad, m) = (cfg.hidden.clone(), 5, 2, 2.0);
    let (actor, actor_store) = candle_net(&algo, "actor", |vb| {
        TanhGaussianActor::new(vb, od, ad, &h, m)
    });
    let (critic, critic_store) = candle_net(&algo, "critic", |vb| {
        QEnsemble::continuous(vb, 2, od, ad, &h)
    });
    let (critic_t, _) = candle_net(&algo, "critic_target", |vb| {
        QEnsemble::continuous(vb, 2, od, ad, &h)
    });
    let la_t = algo
        .nets()
        .into_iter()
        .find(|(k, _)| *k == "log_alpha")
        .unwrap()
        .1
        .named_tensors("");
    let mut la_store = ParamStore::new(Device::Cpu);
    la_store
        .insert(la_t[0].0.clone(), la_t[0].1.clone())
        .unwrap();
    let la = la_store.get("log_alpha").unwrap().as_tensor().clone();
    let alpha = la.exp().unwrap().detach();
    let e_t = noise.normal(&[32, ad]).unwrap();
    let e_a = noise.normal(&[32, ad]).unwrap();
    let (a2, lp2) = actor.sample_with(&b.s2, &e_t).unwrap();
    let v2 = (critic_t.q(&b.s2, &a2).unwrap().min(0).unwrap() - lp2.broadcast_mul(&alpha).unwrap())
        .unwrap();
    let y = b.td_target(&v2).unwrap().detach();
    let q = critic.q(&b.s, &b.a).unwrap();
    let critic_loss = (mse_per_member(&q, &y).unwrap() * 0.5)
        .unwrap()
        .sum_all()
        .unwrap();
    assert_parity(case, &probes, "critic_loss", &critic_loss, &critic_store);
    let (a, lp) = actor.sample_with(&b.s, &e_a).unwrap();
    let qa = critic.q(&b.s, &a).unwrap().min(0).unwrap();
    let actor_loss = (lp.broadcast_mul(&alpha).unwrap() - qa)
        .unwrap()
        .mean_all()
        .unwrap();
    assert_parity(case, &probes, "actor_loss", &actor_loss, &actor_store);
    let alpha_loss = la
        .broadcast_mul(&(lp.detach() - 2.0).unwrap())
        .unwrap()
        .neg()
        .unwrap()
        .mean_all()
        .unwrap();
    assert_parity(case, &probes, "alpha_loss", &alpha_loss, &la_store);
}

#[test]
fn dqn_gradients_match_autograd() {
    dqn_parity(orl_nets::engine::backend::Cpu);
    dqn_parity(Candle::cpu());
}

/// DQN's Huber loss (double and plain targets) against autograd on backend `be`.
fn dqn_parity<B: orl_nets::engine::backend::Backend>(be: B) {
    for double in [true, false] {
        let (spec, mut rp) = replay(true);
        let cfg = DqnConfig {
            hidden: vec![16, 16],
            double,
            target_update_interval: 3,
            ..DqnConfig::default()
        };
        let mut algo = Dqn::new_on(be.clone(), spec.clone(), cfg.clone(), 8, &Device::Cpu).unwrap();
        let batch = warm_batch(&mut rp, &mut algo, 64);
        let probes = algo.probe(&batch).unwrap();
        let b = BatchTensors::new(&batch, &spec, &Device::Cpu).unwrap();
        let h = cfg.hidden.clone();
        let (q_net, store) = candle_net(&algo, "critic", |vb| QEnsemble::discrete(vb, 1, 5, 3, &h));
        let (q_t, _) = candle_net(&algo, "critic_target", |vb| {
            QEnsemble::discrete(vb, 1, 5, 3, &h)
        });
        let d = candle_core::D::Minus1;
        let q2t = q_t.q_all(&b.s2).unwrap().get(0).unwrap();
        let v2 = if double {
            let a2 = q_net
                .q_all(&b.s2)
                .unwrap()
                .get(0)
                .unwrap()
                .argmax(d)
                .unwrap();
            gather_actions(&q2t, &a2).unwrap()
        } else {
            q2t.max(d).unwrap()
        };
        let y = b.td_target(&v2).unwrap().detach();
        let q = gather_actions(&q_net.q_all(&b.s).unwrap().get(0).unwrap(), &b.a).unwrap();
        let loss = huber_loss(&q, &y).unwrap();
        assert_parity(
            &format!("dqn double={double} on {}", be.name()),
            &probes,
            "critic_loss",
            &loss,
            &store,
        );
    }
}
