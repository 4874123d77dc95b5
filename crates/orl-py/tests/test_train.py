"""Training, loading, acting, exporting, evaluating and OPE from Python."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import orl


def test_bc_trains_and_its_policy_acts_on_a_batch(bc_run, dataset):
    out, policy = bc_run
    assert (out / "checkpoint.safetensors").exists()
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "finished"
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [100, 200, 300]
    assert all(np.isfinite(r["actor_loss"]) for r in rows)
    batch = dataset.observations[:7]
    actions = policy.act(batch)
    assert actions.shape == (7, 1) and actions.dtype == np.float32
    assert np.all(np.abs(actions) <= 2.0)
    # Deterministic: the same batch gives the same actions, and one row equals the batch's.
    assert np.array_equal(policy.act(batch), actions)
    assert np.array_equal(policy.act(batch[3]), actions[3])
    # BC moved towards the data: its loss fell.
    assert rows[-1]["actor_loss"] < rows[0]["actor_loss"]
    with pytest.raises(ValueError, match="observations"):
        policy.act(np.zeros((2, 5), np.float32))


def test_loaded_policy_equals_trained_and_exports(bc_run, dataset, tmp_path):
    out, policy = bc_run
    again = orl.load(out)
    obs = dataset.observations[:32]
    assert np.array_equal(again.act(obs), policy.act(obs))
    assert again.algo == "bc" and again.env_id == "Pendulum-v1"
    path = tmp_path / "bc.safetensors"
    again.export(path)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert "__metadata__" in header


def test_same_seed_same_numbers(dataset, tmp_path):
    kw = dict(steps=50, seed=3, log_every=50, config={"hidden": [16]}, progress=False)
    a = orl.train("td3bc", dataset, out=tmp_path / "a", **kw)
    b = orl.train("td3bc", dataset, out=tmp_path / "b", **kw)
    obs = dataset.observations[:16]
    assert np.array_equal(a.act(obs), b.act(obs))


def test_callback_receives_rows_and_bad_settings_are_value_errors(dataset, tmp_path):
    seen = []
    orl.train("bc", dataset, steps=40, out=tmp_path / "cb", log_every=10,
              callback=seen.append, config={"hidden": [8]}, progress=False)
    assert [r["step"] for r in seen] == [10, 20, 30, 40]
    with pytest.raises(ValueError, match="hiden"):
        orl.train("bc", dataset, steps=10, out=tmp_path / "bad", config={"hiden": [8]},
                  progress=False)
    with pytest.raises(ValueError, match="nope"):
        orl.train("nope", dataset, steps=10, out=tmp_path / "bad2", progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        orl.train("bc", dataset, steps=40, out=tmp_path / "cb", progress=False)


def test_keyboard_interrupt_from_the_callback_leaves_a_loadable_checkpoint(dataset, tmp_path):
    out = tmp_path / "stopped"

    def stop_at_300(row):
        if row["step"] >= 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        orl.train("bc", dataset, steps=1000, out=out, log_every=100, checkpoint_every=200,
                  callback=stop_at_300, config={"hidden": [16]}, progress=False)
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert "update 200" in status["message"]
    policy = orl.load(out)
    assert policy.act(dataset.observations[:3]).shape == (3, 1)
    # Resuming finishes the run, and equals an uninterrupted one.
    resumed = orl.train("bc", dataset, steps=1000, out=out, log_every=100, checkpoint_every=200,
                        config={"hidden": [16]}, resume=True, progress=False)
    whole = orl.train("bc", dataset, steps=1000, out=tmp_path / "whole", log_every=100,
                      checkpoint_every=200, config={"hidden": [16]}, progress=False)
    obs = dataset.observations[:64]
    assert np.array_equal(resumed.act(obs), whole.act(obs))


def test_training_releases_the_gil(dataset, tmp_path):
    """Another Python thread runs while orl trains (the GIL is released)."""
    import threading

    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    orl.train("td3bc", dataset, steps=1500, out=tmp_path / "gil", log_every=1500,
              config={"hidden": [64, 64]}, progress=False)
    end = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if start < x < end]
    # With the GIL held for the whole call the thread could not tick at all in between.
    assert end - start > 0.2 and len(during) > 0.2 * (end - start) / 0.001 * 0.1, (
        end - start, len(during))


def test_sigint_stops_training_and_keeps_the_checkpoint(dataset, tmp_path):
    """A real Ctrl-C (SIGINT to the process) while Rust trains with the GIL released."""
    path = tmp_path / "d.parquet"
    dataset.save(path)
    out = tmp_path / "sigint"
    # A shell that starts a job in the background without job control (`cmd &` in a script,
    # as CI harnesses do) starts it with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: reinstall it, as an interactive terminal would have it.
    script = (
        "import orl, signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"orl.train('bc', {str(path)!r}, steps=10_000_000, out={str(out)!r}, log_every=500,"
        " checkpoint_every=500, config={'hidden': [16]}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no exit within 60 s of SIGINT; stderr: {err!r}")
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err, err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "interrupted", status
    assert orl.load(out).act(dataset.observations[:2]).shape == (2, 1)


def test_evaluate_on_gymnasium_equals_orl_s_own_pendulum(bc_run):
    gymnasium = pytest.importorskip("gymnasium")
    _, policy = bc_run
    ours = orl.evaluate(policy, "Pendulum-v1", episodes=3, seed=11)
    theirs = orl.evaluate(policy, gymnasium.make("Pendulum-v1"), episodes=3, seed=11)
    assert ours["lengths"] == theirs["lengths"] == [200, 200, 200]
    assert ours["returns"] == theirs["returns"]  # exactly: same start states, same steps
    # The default environment is the one the policy was trained for.
    assert orl.evaluate(policy, episodes=3, seed=11)["returns"] == ours["returns"]


def test_evaluate_runs_a_user_written_environment(bc_run):
    _, policy = bc_run

    class Constant:
        """Reward 1 per step, 5 steps; observations are zeros."""

        def reset(self, seed=None):
            self.t = 0
            return np.zeros(3, np.float32), {}

        def step(self, action):
            assert np.shape(action) == (1,)
            self.t += 1
            return np.zeros(3, np.float32), 1.0, False, self.t >= 5, {}

    r = orl.evaluate(policy, Constant(), episodes=2, seed=0, ref_scores=(0.0, 10.0))
    assert r["returns"] == [5.0, 5.0] and r["lengths"] == [5, 5]
    assert r["normalized_mean"] == pytest.approx(50.0)


def test_ope_returns_every_estimator(dataset, tmp_path):
    # IQL's Gaussian actor has a density, so the importance-sampling family is defined too
    # (a deterministic BC policy has none).
    policy = orl.train("iql", dataset, steps=200, out=tmp_path / "iql", log_every=100,
                       checkpoint_every=100, config={"hidden": [32, 32]}, progress=False)
    rows = orl.ope(policy, dataset, gamma=0.99, seed=0,
                   config={"resamples": 50, "fqe": {"steps": 200}, "model": {"steps": 100}})
    names = [r["estimator"] for r in rows]
    assert names == ["is", "wis", "pdis", "wpdis", "dr", "wdr", "ris", "fqe", "model"]
    for r in rows:
        assert set(r) >= {"estimator", "value", "low", "high", "ess", "warnings", "target"}
        assert r["value"] is not None and np.isfinite(r["value"]), r
        assert r["low"] <= r["high"], r
    # Pendulum's rewards are in [-16.3, 0]: WIS, a weighted average of logged returns, lies
    # within the discounted range.
    wis = next(r for r in rows if r["estimator"] == "wis")["value"]
    assert -16.3 / (1 - 0.99) <= wis <= 0
    only = orl.ope(policy, dataset, estimators=["wis", "fqe"], config={"fqe": {"steps": 50}})
    assert [r["estimator"] for r in only] == ["wis", "fqe"]
    with pytest.raises(ValueError, match="bogus"):
        orl.ope(policy, dataset, estimators="bogus")
