//! Random TOML values fed to every registered algorithm's configuration: building and one
//! update either work or fail with an error; nothing panics, ever.

#![allow(clippy::unwrap_used)]

mod common;

use candle_core::Device;
use orl_algos::{AlgoKind, Spec};
use orl_data::{ActionSpace, Replay, ReplayConfig};
use proptest::prelude::*;

/// TOML values of every kind, biased to the edges: zero, negative, huge, NaN/inf, wrong types,
/// empty and odd arrays.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "2",
            "3",
            "7",
            "-1",
            "-3",
            "1000000",
            "1099511627776",
            "9223372036854775807",
            "0.0",
            "-0.0",
            "0.5",
            "1.0",
            "1.5",
            "-2.5",
            "1e-9",
            "1e300",
            "nan",
            "inf",
            "-inf",
            "true",
            "false",
            "\"x\"",
            "\"mse\"",
            "\"nll\"",
            "[]",
            "[0]",
            "[1]",
            "[8, 8]",
            "[0, 8]",
            "[-1]",
            "[100000]",
            "[8.5]",
            "[\"a\"]",
            "{}",
            "[[1]]",
        ])
        .prop_map(str::to_string),
        (-5i64..200).prop_map(|i| i.to_string()),
        (-2.0f64..2.0).prop_map(|f| format!("{f:?}")),
        prop::collection::vec(1usize..12, 0..4).prop_map(|v| format!("{v:?}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_toml_never_panics(
        algo in 0usize..64,
        discrete in any::<bool>(),
        picks in prop::collection::vec((0usize..64, value()), 1..5),
    ) {
        let kinds = AlgoKind::all();
        let kind = kinds[algo % kinds.len()];
        let keys: Vec<String> = (kind.info().defaults)()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        // Small networks unless the draw overrides the width, so that valid draws train fast.
        let mut cfg = serde_json::json!({"hidden": [8]});
        if kind == AlgoKind::BCQ {
            cfg["vae_hidden"] = serde_json::json!([8]);
            cfg["n_act_samples"] = serde_json::json!(4);
        }
        for (k, v) in &picks {
            // Each value as TOML parses it (nan, inf, arrays, tables), then as JSON.
            let toml: toml::Value = toml::from_str(&format!("v = {v}")).unwrap();
            cfg[&keys[k % keys.len()]] = serde_json::to_value(&toml["v"]).unwrap();
        }
        let (spec, space) = if discrete && kind.supports_discrete() {
            (Spec::discrete(3, 2), ActionSpace::Discrete { n: 2 })
        } else {
            (Spec::continuous(3, 1, 1.0), ActionSpace::Continuous { dim: 1, low: None, high: None })
        };
        if let Ok(mut algo) = kind.build(spec, Some(&cfg), 0, &Device::Cpu) {
            let ds = common::synthetic(3, space, 2, 10, 0);
            let mut replay = Replay::new(ds, ReplayConfig::default(), 0).unwrap();
            // A finite loss or a divergence error are both answers; a panic is not.
            let _ = algo.update(&replay.sample(4));
        }
    }
}
