//! `cargo xtask ope-bench`: every off-policy estimator judged against true values, with the
//! DOPE benchmark's metrics (Fu et al. 2021): absolute error of values normalised to [0, 1]
//! between the worst and best policy, Spearman rank correlation, and regret@1.
//!
//! 1. the evaluation data is `--dataset` of `datasets/manifest.json` (built by `gen-datasets`;
//!    default `pendulum-v1-medium-replay`: orl's SAC buffer up to the medium snapshot, with the acting
//!    policy's log-probability logged on every row);
//! 2. policies of varied quality: the checkpoints of BC (Gaussian), IQL and CQL after each of
//!    `--checkpoints` updates (default 25, 250, 1000, 4000) on that dataset, trained by
//!    `orl_algos::Trainer` with each algorithm's recipe (IQL's reward scaling included) and the
//!    benchmark's reduced protocol at 64x64, seed 0;
//! 3. each policy's true discounted value: `--truth-episodes` (default 200) stochastic rollouts in
//!    Pendulum-v1 from fresh reset seeds (the same initial-state distribution as the data);
//! 4. every estimator on the dataset (`orl_ope::evaluate`), gamma `--gamma` (default 0.95: the
//!    episodes are cut at 200 steps and FQE/model estimate the untruncated value; at 0.95 the
//!    difference is gamma^200 ~ 4e-5 of the value);
//! 5. `target/ope-bench/results.json`, `report.md` (metrics per estimator, then estimates per
//!    policy) and `estimates.png` / `.svg` (estimate against truth, one panel per estimator).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use orl_algos::{Agent, AlgoKind, Hooks, Recipe, RecipeRequest, Schedule, Trainer};
use orl_data::Dataset;
use orl_envs::{Env, make};
use orl_nets::Device;
use orl_ope::{Estimator, OpeConfig, OpeReport, evaluate, rank_metrics};
use plotters::prelude::*;
use serde_json::{Value, json};

struct Opts {
    dataset: String,
    checkpoints: Vec<usize>,
    truth_episodes: usize,
    gamma: f64,
    out: PathBuf,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        dataset: "pendulum-v1-medium-replay".into(),
        checkpoints: vec![25, 250, 1000, 4000],
        truth_episodes: 200,
        gamma: 0.95,
        out: crate::workspace_root().join("target/ope-bench"),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dataset" => o.dataset = val()?.clone(),
            "--checkpoints" => {
                o.checkpoints = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--truth-episodes" => o.truth_episodes = val()?.parse()?,
            "--gamma" => o.gamma = val()?.parse()?,
            "--out" => o.out = PathBuf::from(val()?),
            other => bail!("ope-bench: unknown argument `{other}`"),
        }
    }
    if o.checkpoints.is_empty() || o.checkpoints.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--checkpoints must be increasing update counts, e.g. 250,1000,4000");
    }
    Ok(o)
}

const ALGOS: [AlgoKind; 3] = [AlgoKind::BC, AlgoKind::IQL, AlgoKind::CQL];

/// The benchmark's settings of each policy: the reduced protocol at 64x64, BC as a Gaussian
/// (IS needs a density).
fn algo_config(kind: AlgoKind, last: usize) -> Value {
    let mut cfg = kind.reduced_config(64, last);
    if kind == AlgoKind::BC {
        cfg["loss"] = json!("nll");
    }
    cfg
}

/// A trained snapshot: its name and checkpoint (which holds the recipe and the normalisation).
struct Snapshot {
    name: String,
    path: PathBuf,
}

/// Saves a checkpoint at each requested update count.
struct SnapshotHooks<'a> {
    at: &'a [(usize, PathBuf)],
}

impl Hooks for SnapshotHooks<'_> {
    type Error = anyhow::Error;
    fn on_update(&mut self, t: &Trainer) -> Result<()> {
        if let Some((_, p)) = self.at.iter().find(|(s, _)| *s == t.step()) {
            t.save_checkpoint(p)?;
        }
        Ok(())
    }
}

/// Trains each algorithm once through `orl_algos::Trainer` (its recipe: normalisation, IQL's
/// reward scaling, batch size), saving the requested snapshots.
fn train(o: &Opts, data: &Path) -> Result<Vec<Snapshot>> {
    let dir = o.out.join("policies");
    std::fs::create_dir_all(&dir)?;
    let last = *o.checkpoints.last().unwrap_or(&0);
    let mut out = Vec::new();
    for kind in ALGOS {
        let at: Vec<(usize, PathBuf)> = o
            .checkpoints
            .iter()
            .map(|&s| (s, dir.join(format!("{}-{s:06}.safetensors", kind.name()))))
            .collect();
        if at.iter().any(|(_, p)| !p.exists()) {
            let t = Instant::now();
            let ds = Dataset::open(data)?;
            let req = RecipeRequest {
                protocol: Some(algo_config(kind, last)),
                eval_env: Some("Pendulum-v1".into()),
                dataset_path: Some(data.display().to_string()),
                ..RecipeRequest::new(last, 0)
            };
            let recipe = Recipe::new(kind, &ds, &req)?;
            let mut trainer = Trainer::new(recipe, ds, &Device::Cpu)?;
            trainer.run(&Schedule::quiet(last), &mut SnapshotHooks { at: &at })?;
            println!(
                "  trained {} to {last} updates in {:.0} s",
                kind.name(),
                t.elapsed().as_secs_f64()
            );
        }
        for (s, p) in at {
            out.push(Snapshot {
                name: format!("{}@{s}", kind.name()),
                path: p,
            });
        }
    }
    Ok(out)
}

/// The snapshot as a stochastic agent (OPE evaluates the policy's distribution).
fn load(s: &Snapshot) -> Result<Agent> {
    let (mut agent, _, _) = Agent::from_checkpoint(&s.path, &Device::Cpu)
        .with_context(|| format!("loading {}", s.path.display()))?;
    agent.deterministic = false;
    Ok(agent)
}

/// Mean discounted return (and its standard error) of `episodes` stochastic rollouts, all
/// episodes stepped together so the policy acts on one batch per step.
fn true_value(agent: &mut Agent, episodes: usize, gamma: f64) -> Result<(f64, f64)> {
    let mut envs: Vec<Box<dyn Env>> = (0..episodes)
        .map(|_| make("Pendulum-v1"))
        .collect::<Result<_, _>>()?;
    let mut obs: Vec<Vec<f64>> = vec![Vec::new(); episodes];
    for (i, e) in envs.iter_mut().enumerate() {
        e.reset_into(Some(5_000_000 + i as u64), &mut obs[i]);
    }
    let mut ret = vec![0f64; episodes];
    let mut alive = vec![true; episodes];
    let mut disc = 1.0;
    let mut next = Vec::new();
    while alive.iter().any(|&a| a) {
        let live: Vec<usize> = (0..episodes).filter(|&i| alive[i]).collect();
        let raw: Vec<f32> = live
            .iter()
            .flat_map(|&i| obs[i].iter().map(|&x| x as f32))
            .collect();
        let actions = agent.act_raw(&raw)?;
        for (j, &i) in live.iter().enumerate() {
            let out = envs[i].step_into(actions[j].as_action(), &mut next)?;
            ret[i] += disc * out.reward;
            std::mem::swap(&mut obs[i], &mut next);
            if out.terminated || out.truncated {
                alive[i] = false;
            }
        }
        disc *= gamma;
    }
    let n = episodes as f64;
    let mean = ret.iter().sum::<f64>() / n;
    let sd = (ret.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    Ok((mean, sd / n.sqrt()))
}

fn ope_config(gamma: f64) -> OpeConfig {
    let mut cfg = OpeConfig {
        gamma,
        ..OpeConfig::default()
    };
    cfg.fqe.hidden = vec![64, 64];
    cfg.fqe.lr = 1e-3;
    cfg.model.hidden = vec![64, 64];
    cfg.model.steps = 3000;
    cfg.behavior.steps = 2000;
    cfg
}

/// Runs the benchmark.
pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    let start = Instant::now();
    std::fs::create_dir_all(&o.out)?;
    println!("ope-bench: dataset {} ...", o.dataset);
    let data = crate::gen_datasets::generate(
        std::slice::from_ref(&o.dataset),
        20_000,
        &crate::gen_datasets::default_cache_dir(),
    )?
    .pop()
    .map(|g| g.path)
    .context("no dataset generated")?;
    println!("training the evaluated policies on {} ...", o.dataset);
    let snaps = train(&o, &data)?;
    let ds = Dataset::open(&data)?;
    let cfg = ope_config(o.gamma);
    let last = *o.checkpoints.last().unwrap_or(&0);
    let mut rows = Vec::new();
    for s in &snaps {
        let t = Instant::now();
        let mut agent = load(s)?;
        let (truth, truth_se) = true_value(&mut agent, o.truth_episodes, o.gamma)?;
        let mut agent = load(s)?;
        let rep: OpeReport =
            evaluate(&ds, &mut agent, &cfg).with_context(|| format!("estimating {}", s.name))?;
        println!(
            "  {:<10} true {truth:8.2} | {} ({:.0} s)",
            s.name,
            rep.estimates
                .iter()
                .map(|e| format!(
                    "{} {}",
                    e.estimator,
                    e.value.map_or("-".into(), |v| format!("{v:.1}"))
                ))
                .collect::<Vec<_>>()
                .join(", "),
            t.elapsed().as_secs_f64()
        );
        rows.push((s.name.clone(), truth, truth_se, rep));
    }
    let truths: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let mut metrics = Vec::new();
    for (k, e) in cfg.estimators.iter().enumerate() {
        let est: Vec<Option<f64>> = rows.iter().map(|r| r.3.estimates[k].value).collect();
        let m = if est.iter().all(Option::is_some) {
            let v: Vec<f64> = est.iter().map(|x| x.unwrap_or(f64::NAN)).collect();
            rank_metrics(&v, &truths)
        } else {
            None
        };
        metrics.push((e.name(), m, est.iter().filter(|x| x.is_none()).count()));
    }
    let result = json!({
        "dataset": o.dataset, "gamma": o.gamma, "checkpoints": o.checkpoints, "truth_episodes": o.truth_episodes,
        "ope_config": cfg, "algo_configs": ALGOS.iter().map(|k| json!({"algo": k.name(), "config": algo_config(*k, last)})).collect::<Vec<_>>(),
        "policies": rows.iter().map(|(n, t, se, r)| json!({"policy": n, "true_value": t, "true_value_se": se, "report": r})).collect::<Vec<_>>(),
        "metrics": metrics.iter().map(|(n, m, u)| json!({"estimator": n, "metrics": m, "undefined_for": u})).collect::<Vec<_>>(),
        "wall_s": start.elapsed().as_secs_f64(), "orl_version": env!("CARGO_PKG_VERSION"),
    });
    crate::write_atomic(
        &o.out.join("results.json"),
        serde_json::to_string_pretty(&result)?.as_bytes(),
    )?;
    let md = report(&o, &rows, &metrics, start.elapsed().as_secs_f64());
    crate::write_atomic(&o.out.join("report.md"), md.as_bytes())?;
    for f in ["estimates.png", "estimates.svg"] {
        plot(&o.out.join(f), &rows, &cfg.estimators)
            .map_err(|e| anyhow::anyhow!("plotting {f}: {e}"))?;
    }
    println!("{md}");
    println!("wrote {}", o.out.display());
    Ok(())
}

type Row = (String, f64, f64, OpeReport);

/// One decimal, or scientific notation for the astronomically large values that unweighted
/// importance sampling produces.
fn num(v: f64) -> String {
    if v.abs() >= 1e5 {
        format!("{v:.1e}")
    } else {
        format!("{v:.1}")
    }
}

fn report(
    o: &Opts,
    rows: &[Row],
    metrics: &[(&str, Option<orl_ope::RankMetrics>, usize)],
    wall: f64,
) -> String {
    let mut s = format!(
        "Dataset `{}`, gamma {}, {} policies (BC, IQL, CQL after {:?} updates), true values from {} stochastic rollouts each; {:.0} s.\n\n",
        o.dataset,
        o.gamma,
        rows.len(),
        o.checkpoints,
        o.truth_episodes,
        wall
    );
    s.push_str(
        "| estimator | abs. error (normalised) | Spearman | regret@1 |\n|---|---|---|---|\n",
    );
    for (n, m, undefined) in metrics {
        match m {
            Some(m) => s.push_str(&format!(
                "| {n} | {} | {:.3} | {:.3} |\n",
                if m.abs_error >= 1e5 {
                    format!("{:.1e}", m.abs_error)
                } else {
                    format!("{:.3}", m.abs_error)
                },
                m.spearman,
                m.regret_at_1
            )),
            None => s.push_str(&format!(
                "| {n} | undefined for {undefined} policies | - | - |\n"
            )),
        }
    }
    s.push_str("\n| policy | true value | ");
    let names: Vec<&str> = rows
        .first()
        .map(|r| r.3.estimates.iter().map(|e| e.estimator).collect())
        .unwrap_or_default();
    s.push_str(&names.join(" | "));
    s.push_str(" |\n|---|---|");
    s.push_str(&"---|".repeat(names.len()));
    s.push('\n');
    for (n, t, se, r) in rows {
        s.push_str(&format!("| {n} | {t:.1} +- {se:.1} |"));
        for e in &r.estimates {
            match (e.value, e.interval) {
                (Some(v), Some(i)) => {
                    s.push_str(&format!(" {} [{}, {}] |", num(v), num(i.low), num(i.high)))
                }
                (Some(v), None) => s.push_str(&format!(" {} |", num(v))),
                _ => s.push_str(" - |"),
            }
        }
        s.push('\n');
    }
    s
}

type PResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Estimate against true value, one panel per estimator, with the diagonal.
/// PNG or SVG by the extension of `path`, written through a temporary file.
fn plot(path: &Path, rows: &[Row], est: &[Estimator]) -> PResult<()> {
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, crate::PLOT_FONT);
    let svg = path.extension().is_some_and(|e| e == "svg");
    let tmp = path.with_extension(if svg { "tmp.svg" } else { "tmp.png" });
    if svg {
        draw(
            SVGBackend::new(&tmp, (1200, 1200)).into_drawing_area(),
            rows,
            est,
        )?;
    } else {
        draw(
            BitMapBackend::new(&tmp, (1200, 1200)).into_drawing_area(),
            rows,
            est,
        )?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    est: &[Estimator],
) -> PResult<()>
where
    DB::ErrorType: 'static,
{
    {
        root.fill(&WHITE)?;
        let cols = 3;
        let panels = root.split_evenly((est.len().div_ceil(cols), cols));
        let truths: Vec<f64> = rows.iter().map(|r| r.1).collect();
        // Axes span the true values with half their range as margin on each side; estimates
        // outside are drawn on the border in red (the importance-sampling family can be off by
        // orders of magnitude).
        let tlo = truths.iter().copied().fold(f64::INFINITY, f64::min);
        let thi = truths.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let pad = ((thi - tlo) * 0.5).max(1.0);
        let (lo, hi) = (tlo - pad, thi + pad);
        for (k, (area, e)) in panels.iter().zip(est).enumerate() {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| r.3.estimates[k].value.map(|v| (r.1, v)))
                .collect();
            let off = pts.iter().filter(|p| p.1 < lo || p.1 > hi).count();
            let title = if off > 0 {
                format!("{} ({off} off scale)", e.name())
            } else {
                e.name().to_string()
            };
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(lo..hi, lo..hi)?;
            chart
                .configure_mesh()
                .x_desc("true value")
                .y_desc("estimate")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(("sans-serif", 11))
                .draw()?;
            chart.draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], BLACK.mix(0.4)))?;
            chart.draw_series(
                pts.iter()
                    .filter(|p| p.1 >= lo && p.1 <= hi)
                    .map(|&p| Circle::new(p, 4, BLUE.filled())),
            )?;
            chart.draw_series(
                pts.iter()
                    .filter(|p| p.1 < lo || p.1 > hi)
                    .map(|&(x, y)| Cross::new((x, y.clamp(lo, hi)), 5, RED.stroke_width(2))),
            )?;
        }
        root.present()?;
    }
    Ok(())
}
