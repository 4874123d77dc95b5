"""A grid of orl runs on Ray Tune: algorithms x seeds x network width, each trial one
``orl.train`` on one CPU, and the best configuration by its final evaluation return.

On this machine (a local Ray cluster is started for you)::

    pip install ./crates/orl-py "ray[tune]" pandas gymnasium
    python crates/orl-py/examples/ray_tune_sweep.py --steps 3000

On a multi-machine Ray cluster: start Ray on every machine (``ray start --head`` on one,
``ray start --address=HEAD:6379`` on the others), install orl on each, put the dataset and the
output folder on storage every machine mounts (NFS, a shared volume), then run on any of them::

    python ray_tune_sweep.py --address auto --dataset /shared/pendulum.parquet --out /shared/orl-sweep

Every trial writes an ordinary orl run folder (``run.json``, checkpoint, ``metrics.jsonl``) under
``--out``, so ``orl.load`` / ``orl eval`` / ``orl ope`` work on the results afterwards. orl runs one
thread per run (the default), so one trial per CPU fills a machine.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import orl


def pendulum_dataset(path: str, episodes: int = 25, seed: int = 0) -> str:
    """Logs a noisy linear controller on Gymnasium's Pendulum-v1 into an orl Parquet file:
    a stand-in for your own logs (``orl.Dataset.from_numpy`` takes them the same way)."""
    import gymnasium

    env = gymnasium.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    cols: dict = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts",
                                  "next_observations")}
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            a = np.float32(-0.5 * obs[2] + 0.5 * rng.standard_normal(1))
            nxt, r, term, trunc, _ = env.step(a)
            for k, v in zip(cols, (obs, a, r, term, trunc, nxt)):
                cols[k].append(v)
            obs, done = nxt, term or trunc
    ds = orl.Dataset.from_numpy(
        observations=np.asarray(cols["observations"], np.float32),
        actions=np.asarray(cols["actions"], np.float32),
        rewards=np.asarray(cols["rewards"], np.float32),
        terminals=np.asarray(cols["terminals"], bool),
        timeouts=np.asarray(cols["timeouts"], bool),
        next_observations=np.asarray(cols["next_observations"], np.float32),
        env_id="Pendulum-v1",
    )
    ds.save(path)
    return path


def report(metrics: dict) -> None:
    """Tune's reporting call (``ray.tune.report`` in current Ray, ``ray.train.report`` before)."""
    from ray import tune

    if hasattr(tune, "report"):
        tune.report(metrics)
    else:  # pragma: no cover - older Ray
        from ray import train

        train.report(metrics)


def trial(config: dict) -> None:
    """One grid cell: an orl run, its evaluations reported to Tune as they happen."""
    name = f"{config['algo']}-h{config['hidden']}-s{config['seed']}"
    out = os.path.join(config["out"], name)

    def on_row(row: dict) -> None:
        if row.get("eval_return") is not None:
            report({"step": row["step"], "eval_return": row["eval_return"], "run": out})

    orl.train(
        config["algo"],
        config["dataset"],
        steps=config["steps"],
        seed=config["seed"],
        config={"hidden": [config["hidden"], config["hidden"]]},
        out=out,
        eval_env="Pendulum-v1",
        eval_every=config["eval_every"],
        eval_episodes=config["eval_episodes"],
        log_every=config["eval_every"],
        callback=on_row,
        progress=False,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=None,
                   help="Ray cluster address (`auto` for a running cluster; default: start a local one)")
    p.add_argument("--dataset", default=None,
                   help="orl Parquet dataset on storage every worker sees (default: log one from Gymnasium)")
    p.add_argument("--out", default=os.path.abspath("target/ray-sweep"),
                   help="run folders, on storage every worker sees")
    p.add_argument("--algos", default="bc,td3bc,iql")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--hidden", default="32,64", help="network widths to sweep (two layers each)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
    args = p.parse_args()

    import ray
    from ray import tune

    os.makedirs(args.out, exist_ok=True)
    dataset = args.dataset or pendulum_dataset(os.path.join(args.out, "pendulum.parquet"))
    ray.init(address=args.address, num_cpus=args.cpus if args.address is None else None,
             include_dashboard=False, log_to_driver=False)
    space = {
        "algo": tune.grid_search(args.algos.split(",")),
        "seed": tune.grid_search(list(range(args.seeds))),
        "hidden": tune.grid_search([int(h) for h in args.hidden.split(",")]),
        "dataset": os.path.abspath(dataset),
        "out": os.path.abspath(args.out),
        "steps": args.steps,
        "eval_every": max(args.steps // 3, 1),
        "eval_episodes": args.eval_episodes,
    }
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="eval_return", mode="max"),
        run_config=tune.RunConfig(name="orl-sweep", storage_path=os.path.abspath(
            os.path.join(args.out, "ray")), verbose=0)
        if hasattr(tune, "RunConfig") else None,
    )
    results = tuner.fit()
    errors = [r.error for r in results if r.error is not None]
    if errors:
        print(f"{len(errors)} trial(s) failed; the first: {errors[0]}", file=sys.stderr)
        return 1
    df = results.get_dataframe()
    cols = ["config/algo", "config/hidden", "config/seed", "step", "eval_return"]
    table = df[cols].sort_values(["config/algo", "config/hidden", "config/seed"])
    print(table.to_string(index=False))
    means = table.groupby(["config/algo", "config/hidden"])["eval_return"].agg(["mean", "std"])
    print()
    print(means.to_string())
    best = results.get_best_result()
    print()
    print(f"best configuration: {best.config['algo']} with hidden {best.config['hidden']}x2, "
          f"seed {best.config['seed']}: final return {best.metrics['eval_return']:.1f}")
    (algo, hidden) = means["mean"].idxmax()
    print(f"best over seeds: {algo} with hidden {hidden}x2, mean return {means['mean'].max():.1f}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
