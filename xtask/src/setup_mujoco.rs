//! `cargo xtask setup-mujoco`: fetch the MuJoCo 3.17.0 shared library that `mujoco-rs` 7.0.0
//! binds, without headers or a system install.
//!
//! The library comes from the `mujoco==3.17.0` wheel on PyPI, which ships
//! `mujoco/libmujoco.so.3.17.0`. The task downloads the wheel with `pip download` (no install,
//! no Python packages touched), extracts that one file into the git-ignored
//! `third_party/mujoco/lib/`, and adds the `libmujoco.so` link the linker looks for.
//! `.cargo/config.toml` points `MUJOCO_DYNAMIC_LINK_DIR` there (an absolute path, as `mujoco-rs`
//! requires) and the crates that link MuJoCo add that folder as an rpath in their `build.rs`, so
//! `cargo test --features mujoco` and the binaries run without exporting anything.
//!
//! Idempotent: a present library is kept (`--force` fetches it again).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The MuJoCo version `mujoco-rs =7.0.0` binds.
pub const MUJOCO_VERSION: &str = "3.17.0";

/// Where the library goes, relative to the workspace root (git-ignored).
pub const LIB_DIR: &str = "third_party/mujoco/lib";

/// Runs the task.
pub fn run(args: &[String]) -> Result<()> {
    let force = args.iter().any(|a| a == "--force");
    if let Some(bad) = args.iter().find(|a| *a != "--force") {
        bail!("setup-mujoco: unknown argument `{bad}` (only --force)");
    }
    let dir = ensure(force)?;
    println!("MuJoCo {MUJOCO_VERSION} ready in {}", dir.display());
    Ok(())
}

/// Makes sure the library is in place; returns its folder. Used by other tasks too.
pub fn ensure(force: bool) -> Result<PathBuf> {
    let root = crate::workspace_root();
    let dir = root.join(LIB_DIR);
    let versioned = dir.join(format!("libmujoco.so.{MUJOCO_VERSION}"));
    let link = dir.join("libmujoco.so");
    if !force && versioned.is_file() && link.exists() {
        return Ok(dir);
    }
    if std::env::consts::OS != "linux" {
        bail!(
            "setup-mujoco supports Linux only; on {} install MuJoCo {MUJOCO_VERSION} yourself and \
             set MUJOCO_DYNAMIC_LINK_DIR",
            std::env::consts::OS
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let download = tempfile_dir(&root)?;
    let wheel = fetch_wheel(&download)?;
    extract_library(&wheel, &versioned)?;
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(format!("libmujoco.so.{MUJOCO_VERSION}"), &link)
        .with_context(|| format!("linking {}", link.display()))?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(dir)
}

fn tempfile_dir(root: &Path) -> Result<PathBuf> {
    let d = root.join("third_party/mujoco/download");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

/// `pip download` of the manylinux wheel for this machine's architecture. The library inside
/// does not depend on the Python version, so any CPython tag will do; 3.11's is asked for
/// explicitly so that the host's Python version does not matter.
fn fetch_wheel(dest: &Path) -> Result<PathBuf> {
    let platform = match std::env::consts::ARCH {
        "x86_64" => "manylinux_2_28_x86_64",
        "aarch64" => "manylinux_2_28_aarch64",
        other => bail!("no MuJoCo wheel for architecture {other}"),
    };
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .context("setup-mujoco needs python3 with pip to download the mujoco wheel from PyPI")?;
    println!("downloading mujoco=={MUJOCO_VERSION} from PyPI with pip ...");
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args([
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
        ])
        .args(["--platform", platform, "--dest"])
        .arg(dest)
        .arg(format!("mujoco=={MUJOCO_VERSION}"))
        .status()
        .context("running pip download")?;
    if !status.success() {
        bail!("pip download mujoco=={MUJOCO_VERSION} failed ({status})");
    }
    std::fs::read_dir(dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip left no wheel in {}", dest.display()))
}

/// Copies `mujoco/libmujoco.so.<version>` out of the wheel (a zip), atomically.
fn extract_library(wheel: &Path, out: &Path) -> Result<()> {
    let file =
        std::fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("reading {}", wheel.display()))?;
    let name = format!("mujoco/libmujoco.so.{MUJOCO_VERSION}");
    let mut entry = zip
        .by_name(&name)
        .with_context(|| format!("{} has no {name}", wheel.display()))?;
    let tmp = out.with_extension("partial");
    let mut dst =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::io::copy(&mut entry, &mut dst).with_context(|| format!("extracting {name}"))?;
    drop(dst);
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(())
}
