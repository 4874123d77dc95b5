//! Bad input to `orl convert` and `orl inspect`: every case exits non-zero with an error naming
//! the file and the key or column, never panics, and leaves no output (or temporary) file behind.
//! One test per case.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the assertion

use std::path::{Path, PathBuf};
use std::process::Command;

use hdf5_pure::{EnumTypeBuilder, FileBuilder, make_i8_type};

const N: usize = 40;
const OD: usize = 3;
const AD: usize = 2;

/// What to break in an otherwise valid D4RL-layout file.
#[derive(Clone, Copy, PartialEq)]
enum Break {
    Nothing,
    MissingRewards,
    ShortTerminals,
    StringObservations,
    NanObservation,
    InfReward,
    Empty,
}

fn write_d4rl(path: &Path, brk: Break) {
    let n = if brk == Break::Empty { 0 } else { N };
    let mut obs: Vec<f32> = (0..n * OD).map(|i| i as f32 * 0.01).collect();
    if brk == Break::NanObservation {
        obs[5 * OD + 1] = f32::NAN;
    }
    let mut rewards = vec![1.0f32; n];
    if brk == Break::InfReward {
        rewards[7] = f32::INFINITY;
    }
    let mut terminals = vec![0u8; n];
    if n > 0 {
        terminals[19] = 1;
    }
    let timeouts = vec![0u8; n];
    let bool_t = EnumTypeBuilder::with_base(make_i8_type())
        .value("FALSE", 0)
        .value("TRUE", 1)
        .build()
        .unwrap();
    let mut fb = FileBuilder::new();
    if brk == Break::StringObservations {
        let s: Vec<String> = (0..n).map(|i| format!("obs{i}")).collect();
        let refs: Vec<&str> = s.iter().map(String::as_str).collect();
        fb.create_dataset("observations")
            .with_ascii_strings(&refs)
            .unwrap();
    } else {
        fb.create_dataset("observations")
            .with_f32_data(&obs)
            .with_shape(&[n as u64, OD as u64]);
    }
    fb.create_dataset("next_observations")
        .with_f32_data(&obs)
        .with_shape(&[n as u64, OD as u64]);
    fb.create_dataset("actions")
        .with_f32_data(&vec![0.5; n * AD])
        .with_shape(&[n as u64, AD as u64]);
    if brk != Break::MissingRewards {
        fb.create_dataset("rewards")
            .with_f32_data(&rewards)
            .with_shape(&[n as u64]);
    }
    let term_len = if brk == Break::ShortTerminals {
        n - 3
    } else {
        n
    };
    fb.create_dataset("terminals")
        .with_enum_u8_data(bool_t.clone(), &terminals[..term_len])
        .with_shape(&[term_len as u64]);
    fb.create_dataset("timeouts")
        .with_enum_u8_data(bool_t, &timeouts)
        .with_shape(&[n as u64]);
    fb.write(path).unwrap();
}

fn orl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orl"))
}

/// Runs `orl convert input out.parquet [extra]` and checks the failure contract.
fn expect_failure(input: &Path, extra: &[&str], must_mention: &[&str]) {
    let dir = input.parent().unwrap();
    let out = dir.join("out.parquet");
    let before: Vec<PathBuf> = listing(dir);
    let o = orl()
        .arg("convert")
        .arg(input)
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    assert!(stderr.starts_with("error: "), "no error message: {stderr}");
    let name = input.file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(&*name),
        "error does not name the file {name}: {stderr}"
    );
    for m in must_mention {
        assert!(stderr.contains(m), "error does not mention {m:?}: {stderr}");
    }
    assert!(!out.exists(), "a partial output was left behind");
    assert_eq!(listing(dir), before, "temporary files were left behind");
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn case(brk: Break) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("data.hdf5");
    write_d4rl(&p, brk);
    (dir, p)
}

#[test]
fn valid_file_converts() {
    // The control: the same builder without a break converts, so the failures below are the breaks'.
    let (_d, p) = case(Break::Nothing);
    let out = p.with_file_name("ok.parquet");
    let o = orl().arg("convert").arg(&p).arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
}

#[test]
fn missing_key() {
    let (_d, p) = case(Break::MissingRewards);
    expect_failure(&p, &[], &["missing", "`rewards`"]);
}

#[test]
fn mismatched_lengths() {
    let (_d, p) = case(Break::ShortTerminals);
    expect_failure(&p, &[], &["`terminals`", "37 rows", "40 rows"]);
}

#[test]
fn wrong_dtype() {
    let (_d, p) = case(Break::StringObservations);
    expect_failure(&p, &[], &["`observations`", "dtype", "float32"]);
}

#[test]
fn nan_is_an_error_unless_allowed() {
    let (_d, p) = case(Break::NanObservation);
    expect_failure(
        &p,
        &[],
        &["`observation`", "non-finite", "row 5", "--allow-nonfinite"],
    );
    let out = p.with_file_name("allowed.parquet");
    let o = orl()
        .arg("convert")
        .arg(&p)
        .arg(&out)
        .arg("--allow-nonfinite")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The report counts what was let through.
    let o = orl()
        .arg("inspect")
        .arg(&out)
        .arg("--allow-nonfinite")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("non-finite values      1 in `observation`")
    );
    // Without the flag, loading the Parquet file refuses it too.
    let o = orl().arg("inspect").arg(&out).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("non-finite"));
}

#[test]
fn infinite_reward_is_an_error() {
    let (_d, p) = case(Break::InfReward);
    expect_failure(&p, &[], &["`reward`", "non-finite", "row 7"]);
}

#[test]
fn empty_dataset() {
    let (_d, p) = case(Break::Empty);
    expect_failure(&p, &[], &["empty"]);
}

#[test]
fn truncated_file() {
    let (_d, p) = case(Break::Nothing);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    expect_failure(&p, &[], &["HDF5"]);
}

#[test]
fn corrupt_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, src) = case(Break::Nothing);
    let good = dir.path().join("good.parquet");
    assert!(
        orl()
            .arg("convert")
            .arg(&src)
            .arg(&good)
            .status()
            .unwrap()
            .success()
    );
    let mut bytes = std::fs::read(&good).unwrap();
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    bytes.extend_from_slice(b"PAR1");
    let bad = dir.path().join("bad.parquet");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("out.hdf5");
    let o = orl().arg("convert").arg(&bad).arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && stderr.contains("bad.parquet")
            && stderr.contains("parquet")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn unknown_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.txt");
    std::fs::write(&p, "just some text, not a dataset\n").unwrap();
    expect_failure(&p, &[], &["unrecognised signature"]);
}

#[test]
fn unknown_output_extension() {
    let (_d, p) = case(Break::Nothing);
    let out = p.with_file_name("out.csv");
    let o = orl().arg("convert").arg(&p).arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains("out.csv") && stderr.contains(".parquet"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn failed_conversion_keeps_an_existing_output_intact() {
    let (_d, good) = case(Break::Nothing);
    let out = good.with_file_name("out.parquet");
    assert!(
        orl()
            .arg("convert")
            .arg(&good)
            .arg(&out)
            .status()
            .unwrap()
            .success()
    );
    let before = std::fs::read(&out).unwrap();
    let bad = good.with_file_name("bad.hdf5");
    write_d4rl(&bad, Break::MissingRewards);
    let o = orl().arg("convert").arg(&bad).arg(&out).output().unwrap();
    assert!(!o.status.success());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the earlier output was modified"
    );
}

#[test]
fn inspect_prints_json_and_draws_png_and_svg() {
    let (_d, p) = case(Break::Nothing);
    let o = orl().arg("inspect").arg(&p).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["transitions"], 40);
    assert_eq!(v["report"]["episodes"], 2);
    assert_eq!(v["report"]["episode_ends"]["terminal"], 1);
    assert_eq!(v["report"]["episode_ends"]["unterminated"], 1);
    assert_eq!(v["metadata"]["observation_space"]["dim"], 3);
    for ext in ["png", "svg"] {
        let plot = p.with_file_name(format!("report.{ext}"));
        let o = orl()
            .arg("inspect")
            .arg(&p)
            .arg("--plot")
            .arg(&plot)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let bytes = std::fs::read(&plot).unwrap();
        assert!(bytes.len() > 1000, "{ext} plot is suspiciously small");
        if ext == "png" {
            assert_eq!(&bytes[..4], b"\x89PNG");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"));
        }
    }
    let o = orl()
        .arg("inspect")
        .arg(&p)
        .arg("--plot")
        .arg(p.with_file_name("r.gif"))
        .output()
        .unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains(".png or .svg"));
}
