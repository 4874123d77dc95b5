//! Checks the dependency table of `docs/ARCHITECTURE.md` against `cargo metadata`: every
//! workspace crate's normal dependencies on orl crates are among those its row allows, none is
//! in its "must not depend on" column, only the crates the table names use `anyhow`, and no
//! crate depends on the Python layer `orl-py`.
//! Run by `cargo test -p xtask` (the README's test command).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One row: crate -> (may depend on, must not depend on), as written.
fn table(md: &str) -> Result<BTreeMap<String, (String, String)>> {
    let start = md
        .find("| crate | may depend on | must not depend on |")
        .context("docs/ARCHITECTURE.md: no dependency table")?;
    let mut rows = BTreeMap::new();
    for line in md[start..].lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 {
            bail!("docs/ARCHITECTURE.md: malformed row `{line}`");
        }
        for name in backticked(cells[0]) {
            rows.insert(name, (cells[1].to_string(), cells[2].to_string()));
        }
    }
    Ok(rows)
}

/// The `backticked` names of a cell.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Whether dependency `dep` is what a "must not" cell forbids.
fn forbidden(cell: &str, dep: &str) -> bool {
    if cell.starts_with('(') {
        return false; // a remark, not a list
    }
    let lower = cell.to_ascii_lowercase();
    (dep.starts_with("orl-") && lower.contains("any other orl crate"))
        || backticked(cell)
            .iter()
            .any(|b| b == dep && !lower.contains(&format!("`{b}` (except in tests)")))
        || (dep.starts_with("candle") && lower.contains("candle"))
        || ((dep.starts_with("arrow") || dep == "parquet") && lower.contains("arrow"))
}

/// Every violation of the table by the packages of `metadata` (`cargo metadata` JSON).
pub fn violations(metadata: &Value, md: &str) -> Result<Vec<String>> {
    let rows = table(md)?;
    let anyhow_users: Vec<String> = rows
        .iter()
        .filter(|(_, (may, _))| may.contains("`anyhow`"))
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = Vec::new();
    for p in metadata["packages"].as_array().context("no packages")? {
        let name = p["name"].as_str().unwrap_or_default();
        let deps: Vec<&str> = p["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .collect();
        if deps.contains(&"orl-py") {
            out.push(format!(
                "{name} depends on orl-py; nothing may depend on the Python layer"
            ));
        }
        if deps.contains(&"anyhow") && !anyhow_users.iter().any(|u| u == name) {
            out.push(format!(
                "{name} uses anyhow; the table allows it only in {anyhow_users:?}"
            ));
        }
        let Some((may, must_not)) = rows.get(name) else {
            if name.starts_with("orl-") && name != "orl-benches" {
                out.push(format!("{name} has no row in the dependency table"));
            }
            continue;
        };
        let allowed = backticked(may);
        for d in &deps {
            if forbidden(must_not, d) {
                out.push(format!(
                    "{name} depends on {d}, which its row forbids ({must_not})"
                ));
            }
            if d.starts_with("orl-")
                && !allowed.iter().any(|a| a == d)
                && !may.contains("anything above")
            {
                out.push(format!(
                    "{name} depends on {d}, which its row does not list ({may})"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Result<(Value, String)> {
        let root = crate::workspace_root();
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(&root)
            .output()
            .context("running cargo metadata")?;
        if !out.status.success() {
            bail!("cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
        }
        let md = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))?;
        Ok((serde_json::from_slice(&out.stdout)?, md))
    }

    #[test]
    fn the_dependency_table_is_true() -> Result<()> {
        let (meta, md) = inputs()?;
        let v = violations(&meta, &md)?;
        assert!(
            v.is_empty(),
            "docs/ARCHITECTURE.md is out of date:\n{}",
            v.join("\n")
        );
        Ok(())
    }

    /// The check can fail: an `orl-ope` that depended on `orl-algos` would be reported.
    #[test]
    fn a_forbidden_dependency_is_reported() -> Result<()> {
        let (mut meta, md) = inputs()?;
        for p in meta["packages"].as_array_mut().context("packages")? {
            if p["name"] == "orl-ope" {
                p["dependencies"]
                    .as_array_mut()
                    .context("deps")?
                    .push(serde_json::json!({"name": "orl-algos", "kind": null}));
            }
            if p["name"] == "orl-data" {
                p["dependencies"]
                    .as_array_mut()
                    .context("deps")?
                    .push(serde_json::json!({"name": "anyhow", "kind": null}));
            }
            if p["name"] == "orl-cli" {
                p["dependencies"]
                    .as_array_mut()
                    .context("deps")?
                    .push(serde_json::json!({"name": "orl-py", "kind": null}));
            }
        }
        let v = violations(&meta, &md)?;
        assert!(
            v.iter()
                .any(|s| s.starts_with("orl-ope depends on orl-algos")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|s| s.starts_with("orl-data uses anyhow")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|s| s.starts_with("orl-cli depends on orl-py")),
            "{v:?}"
        );
        Ok(())
    }

    /// Each package of a `cargo tree -e normal,build -f "{p}|{f}" --prefix none` listing, with
    /// its resolved features (a package listed twice, as host and target, keeps both sets).
    fn features_by_package(tree: &str) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in tree.lines() {
            let line = line.trim_end_matches(" (*)").replace(" (proc-macro)", "");
            if let Some((p, f)) = line.split_once('|') {
                let set = out.entry(p.trim().to_string()).or_default();
                let f = f.trim().to_string();
                if !set.contains(&f) {
                    set.push(f);
                    set.sort();
                }
            }
        }
        out
    }

    /// The packages both listings hold with different features, but for `except`.
    fn feature_mismatches(a: &str, b: &str, except: &[&str]) -> Vec<String> {
        let (a, b) = (features_by_package(a), features_by_package(b));
        a.iter()
            .filter(|(p, _)| !except.iter().any(|e| p.starts_with(&format!("{e} "))))
            .filter_map(|(p, fa)| {
                let fb = b.get(p)?;
                (fa != fb).then(|| format!("{p}: {fa:?} against {fb:?}"))
            })
            .collect()
    }

    fn tree(args: &[&str]) -> Result<String> {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-e", "normal,build", "-f", "{p}|{f}"])
            .args(["--prefix", "none"])
            .args(args)
            .current_dir(crate::workspace_root())
            .output()
            .context("running cargo tree")?;
        if !out.status.success() {
            bail!("cargo tree: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The invariant "one release build serves three" (docs/ARCHITECTURE.md): xtask without
    /// and with `mujoco` and the Python package resolve every library they share with the same
    /// features, so that none of the three builds recompiles what another built.
    #[test]
    fn release_builds_resolve_shared_libraries_alike() -> Result<()> {
        let plain = tree(&["-p", "xtask"])?;
        let mujoco = tree(&["-p", "xtask", "--features", "xtask/mujoco"])?;
        let python = tree(&["-p", "orl-py"])?;
        // Only the crates whose own feature differs may differ.
        let mut v = feature_mismatches(&plain, &mujoco, &["orl-envs", "xtask"]);
        v.extend(feature_mismatches(&python, &plain, &[]));
        v.extend(feature_mismatches(&python, &mujoco, &["orl-envs"]));
        assert!(
            v.is_empty(),
            "features differ between the builds:\n{}",
            v.join("\n")
        );
        Ok(())
    }

    /// The comparison can fail: syn without `visit-mut` on one side is reported.
    #[test]
    fn a_feature_difference_is_reported() {
        let a = "syn v2.0.1|derive,full,visit-mut\nserde v1.0.0|std\n";
        let b = "syn v2.0.1 (proc-macro)|derive,full\nserde v1.0.0|std (*)\n";
        let v = feature_mismatches(a, b, &[]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("syn v2.0.1"), "{v:?}");
        assert!(feature_mismatches(a, b, &["syn"]).is_empty());
    }
}
