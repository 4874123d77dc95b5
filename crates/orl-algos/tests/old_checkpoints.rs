//! Checkpoints written before the training engine (by the candle-autograd implementation of
//! commit b2ec0ae, `tests/data/pre-engine/`) load into the engine algorithms: same tensor names
//! and layouts (`docs/checkpoints.md`), the same greedy actions at a probe (recorded then, in
//! `actions.json`), and training resumes from them.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use orl_algos::{AlgoKind, Spec};
use orl_data::{ActionSpace, Replay, ReplayConfig};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pre-engine")
}

#[test]
fn pre_engine_checkpoints_load_and_act_as_before() {
    let recorded: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir().join("actions.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for (kind, discrete) in common::cases() {
        let name = format!(
            "{}-{}",
            kind.name(),
            if discrete { "discrete" } else { "continuous" }
        );
        let path = dir().join(format!("{name}.safetensors"));
        let spec = if discrete {
            Spec::discrete(4, 3)
        } else {
            Spec::continuous(4, 2, 1.0)
        };
        let mut cfg = common::small_config(kind);
        cfg["hidden"] = serde_json::json!([8, 8]);
        if kind == AlgoKind::BCQ {
            cfg["vae_hidden"] = serde_json::json!([8, 8]);
        }
        let mut algo = kind.build(spec, Some(&cfg), 1, &Device::Cpu).unwrap();
        algo.load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(algo.steps(), 3, "{name}");
        let obs: Vec<f32> = (0..5 * 4)
            .map(|i| ((i * 37 % 11) as f32 / 5.5) - 1.0)
            .collect();
        let s = Tensor::from_vec(obs, (5, 4), &Device::Cpu).unwrap();
        algo.reseed_acting(7);
        let got = common::greedy_actions(&mut *algo, &s);
        let want: Vec<f32> = serde_json::from_value(recorded[&name].clone()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5, "{name}: {got:?} vs {want:?}");
        }
        // Training resumes from the loaded state.
        let space = if discrete {
            ActionSpace::Discrete { n: 3 }
        } else {
            ActionSpace::Continuous {
                dim: 2,
                low: None,
                high: None,
            }
        };
        let mut replay = Replay::new(
            common::synthetic(4, space, 20, 25, 7),
            ReplayConfig::default(),
            11,
        )
        .unwrap();
        let m = algo.update(&replay.sample(16)).unwrap();
        assert!(m.values().all(f64::is_finite), "{name}");
        assert_eq!(algo.steps(), 4);
        checked += 1;
    }
    assert_eq!(checked, common::cases().len());
}
