//! The losses against hand-computed numbers: each test fails if a loss is scaled, shifted or
//! wired differently from its paper's definition.

#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use orl_algos::{
    advantage_weights, cql_logsumexp, expectile_loss, mse_per_member, soft_clipped_double_q,
    td3bc_lambda,
};

fn t1(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
}
fn t2(v: &[f32], r: usize, c: usize) -> Tensor {
    Tensor::from_slice(v, (r, c), &Device::Cpu).unwrap()
}
fn scalar(t: &Tensor) -> f64 {
    f64::from(t.to_scalar::<f32>().unwrap())
}
fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}
fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5 * y.abs().max(1.0), "{a:?} vs {b:?}");
    }
}

/// IQL eq. 5: `|tau - 1(u < 0)| u^2`, averaged. u = [2, -1, 0.5], tau = 0.7:
/// (0.7 * 4 + 0.3 * 1 + 0.7 * 0.25) / 3 = 3.275 / 3.
#[test]
fn expectile_loss_weights_positive_errors_by_tau() {
    let l = expectile_loss(&t1(&[2.0, -1.0, 0.5]), 0.7).unwrap();
    close(&[scalar(&l)], &[3.275 / 3.0]);
    // tau = 0.5 is half the squared error.
    let l = expectile_loss(&t1(&[2.0, -1.0, 0.5]), 0.5).unwrap();
    close(&[scalar(&l)], &[0.5 * 5.25 / 3.0]);
}

/// The critics' TD loss is a plain mean squared error per member (no 1/2): q = [[1, 3], [0, 0]],
/// y = [0, 1]: member 0 (1 + 4) / 2 = 2.5, member 1 (0 + 1) / 2 = 0.5.
#[test]
fn td_loss_is_a_plain_mse_per_member() {
    let l = mse_per_member(&t2(&[1.0, 3.0, 0.0, 0.0], 2, 2), &t1(&[0.0, 1.0])).unwrap();
    close(&vec(&l), &[2.5, 0.5]);
}

/// IQL eq. 7's weights: `min(exp(beta A), cap)`. A = [0, 1, -1, 10], beta 3, cap 100:
/// [1, e^3, e^-3, 100].
#[test]
fn iql_weights_are_capped_exponentiated_advantages() {
    let w = advantage_weights(&t1(&[0.0, 1.0, -1.0, 10.0]), 3.0, 100.0).unwrap();
    close(&vec(&w), &[1.0, 3f64.exp(), (-3f64).exp(), 100.0]);
}

/// BCQ eq. 13: `lambda min + (1 - lambda) max` over the two critics. q_1 = [1, 4],
/// q_2 = [3, 2], lambda 0.75: [0.75 + 0.75, 1.5 + 1] = [1.5, 2.5].
#[test]
fn bcq_soft_clipped_double_q() {
    let v = soft_clipped_double_q(&t2(&[1.0, 4.0, 3.0, 2.0], 2, 2), 0.75).unwrap();
    close(&vec(&v), &[1.5, 2.5]);
    // lambda = 1 is clipped double Q (the minimum).
    let v = soft_clipped_double_q(&t2(&[1.0, 4.0, 3.0, 2.0], 2, 2), 1.0).unwrap();
    close(&vec(&v), &[1.0, 2.0]);
}

/// TD3+BC eq. 3: `lambda = alpha / mean |Q|`. Q = [2, -4, 6], alpha 2.5: 2.5 / 4.
#[test]
fn td3bc_lambda_normalises_by_mean_absolute_q() {
    let l = td3bc_lambda(&t1(&[2.0, -4.0, 6.0]), 2.5).unwrap();
    close(&[scalar(&l)], &[0.625]);
}

/// CQL(H) appendix F: per state, `T log sum_j exp((Q_j - log mu_j) / T)` over the uniform,
/// pi(s') and pi(s) samples. One member, two states, N = 1:
/// state 0: Q_rand 1 (log mu = -1), Q_next 2 (log pi = 0.5), Q_cur 0 (log pi = -2)
///   -> log(e^2 + e^1.5 + e^2); state 1: 0, 0, 0 with log mu -1, log pi 0, 0 -> log(e + 2).
/// At T = 2 state 0 is 2 log(e^1 + e^0.75 + e^1).
#[test]
fn cql_importance_sampled_logsumexp() {
    let q_rand = t2(&[1.0, 0.0], 1, 2);
    let q_next = t2(&[2.0, 0.0], 1, 2);
    let q_cur = t2(&[0.0, 0.0], 1, 2);
    let lp_next = t1(&[0.5, 0.0]);
    let lp_cur = t1(&[-2.0, 0.0]);
    let l = cql_logsumexp(&q_rand, &q_next, &q_cur, &lp_next, &lp_cur, -1.0, 1, 1.0).unwrap();
    let e = std::f64::consts::E;
    close(
        &vec(&l),
        &[
            (2f64.exp() + 1.5f64.exp() + 2f64.exp()).ln(),
            (e + 2.0).ln(),
        ],
    );
    let l = cql_logsumexp(&q_rand, &q_next, &q_cur, &lp_next, &lp_cur, -1.0, 1, 2.0).unwrap();
    close(
        &vec(&l)[..1],
        &[2.0 * (1f64.exp() + 0.75f64.exp() + 1f64.exp()).ln()],
    );
    // N = 2 groups rows b * N + j by state: two states of two samples each.
    let q = t2(&[0.0, 1.0, 2.0, 3.0], 1, 4);
    let z = t1(&[0.0; 4]);
    let l = cql_logsumexp(&q, &q, &q, &z, &z, 0.0, 2, 1.0).unwrap();
    let s0 = (3.0 * (1.0 + e)).ln();
    let s1 = (3.0 * (2f64.exp() + 3f64.exp())).ln();
    close(&vec(&l), &[s0, s1]);
}
