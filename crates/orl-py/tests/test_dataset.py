"""numpy / pyarrow / Parquet in and out of orl, and the errors bad arrays raise."""

import json
import subprocess
import sys

import numpy as np
import pytest

import orl

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def test_numpy_to_parquet_to_pyarrow_round_trips_bit_for_bit(tmp_path, arrays):
    ds = orl.Dataset.from_numpy(**arrays, env_id="Pendulum-v1")
    path = tmp_path / "pendulum.parquet"
    ds.save(path)
    table = pq.read_table(path)
    n = len(arrays["rewards"])
    assert table.num_rows == n
    obs = np.asarray(table.column("observation").combine_chunks().flatten()).reshape(n, 3)
    nxt = np.asarray(table.column("next_observation").combine_chunks().flatten()).reshape(n, 3)
    act = np.asarray(table.column("action").combine_chunks().flatten()).reshape(n, 1)
    # Bit for bit: compare the raw bytes, not values.
    assert obs.tobytes() == arrays["observations"].tobytes()
    assert nxt.tobytes() == arrays["next_observations"].tobytes()
    assert act.tobytes() == arrays["actions"].tobytes()
    assert np.asarray(table.column("reward")).tobytes() == arrays["rewards"].tobytes()
    assert (np.asarray(table.column("terminal")) == arrays["terminals"]).all()
    assert (np.asarray(table.column("timeout")) == arrays["timeouts"]).all()
    assert (np.asarray(table.column("behavior_log_prob")).tobytes()
            == arrays["behavior_log_prob"].tobytes())
    steps = np.asarray(table.column("step"))
    assert steps[0] == 0 and steps[199] == 199 and steps[200] == 0
    meta = json.loads(pq.ParquetFile(path).metadata.metadata[b"orl.meta"])
    assert meta["env_id"] == "Pendulum-v1"
    # And back through orl.
    back = orl.Dataset.open(path)
    assert back.observations.tobytes() == arrays["observations"].tobytes()
    assert back.rewards.tobytes() == arrays["rewards"].tobytes()
    assert back.num_episodes == ds.num_episodes == 12


def test_arrow_round_trip_keeps_columns_and_spaces(dataset):
    table = dataset.to_arrow()
    assert isinstance(table, pa.Table)
    assert table.column_names[:4] == ["episode_id", "step", "observation", "action"]
    back = orl.Dataset.from_arrow(table)
    for col in ("observations", "actions", "rewards", "terminals", "timeouts",
                "next_observations", "behavior_log_prob", "episode_ids"):
        assert getattr(back, col).tobytes() == getattr(dataset, col).tobytes(), col
    assert back.metadata == dataset.metadata


def test_arrow_table_built_by_hand_is_accepted_and_validated():
    n = 4
    obs = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(2 * n, dtype=np.float32)), 2)
    table = pa.table({
        "episode_id": pa.array([0, 0, 1, 1], pa.int64()),
        "step": pa.array([0, 1, 0, 1], pa.int64()),
        "observation": obs,
        "action": pa.array([0, 1, 2, 1], pa.int64()),
        "reward": pa.array([1, 0, 0, 1], pa.float32()),
        "terminal": [False, True, False, False],
        "timeout": [False, False, False, True],
        "next_observation": obs,
    })
    ds = orl.Dataset.from_arrow(table)
    assert ds.is_discrete and len(ds) == 4 and ds.num_episodes == 2
    bad = table.set_column(1, "step", pa.array([0, 2, 0, 1], pa.int64()))
    with pytest.raises(ValueError, match="`step`"):
        orl.Dataset.from_arrow(bad)


def test_bad_arrays_raise_value_error_naming_the_field(arrays):
    good = dict(arrays)
    nan = dict(good, rewards=good["rewards"].copy())
    nan["rewards"][17] = np.nan
    with pytest.raises(ValueError, match="`reward`") as e:
        orl.Dataset.from_numpy(**nan)
    assert "17" in str(e.value)
    short = dict(good, terminals=good["terminals"][:-3])
    with pytest.raises(ValueError, match="terminals"):
        orl.Dataset.from_numpy(**short)
    wrong = dict(good, rewards=good["rewards"].astype(np.complex64))
    with pytest.raises(ValueError, match="rewards"):
        orl.Dataset.from_numpy(**wrong)
    strings = dict(good, terminals=np.array(["x"] * len(good["rewards"])))
    with pytest.raises(ValueError, match="terminals"):
        orl.Dataset.from_numpy(**strings)
    flat = dict(good, observations=good["observations"].ravel())
    with pytest.raises(ValueError, match="observations"):
        orl.Dataset.from_numpy(**flat)
    # allow_nonfinite keeps the row (and inspect counts it).
    kept = orl.Dataset.from_numpy(**nan, allow_nonfinite=True)
    assert np.isnan(kept.rewards[17])


def test_missing_file_is_os_error_and_bad_extension_value_error(tmp_path, dataset):
    with pytest.raises(OSError, match="nope.parquet"):
        orl.Dataset.open(tmp_path / "nope.parquet")
    with pytest.raises(ValueError, match="extension"):
        dataset.save(tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_inspect_plot_and_convert(tmp_path, dataset):
    doc = dataset.inspect()
    assert doc["report"]["transitions"] == len(dataset)
    assert doc["report"]["episodes"] == dataset.num_episodes
    assert doc["metadata"]["env_id"] == "Pendulum-v1"
    png = tmp_path / "fig.png"
    dataset.plot(png)
    assert png.read_bytes()[:4] == b"\x89PNG"
    src = tmp_path / "d.parquet"
    dataset.save(src)
    npz = tmp_path / "d.npz"
    back = orl.convert(src, npz)
    assert len(back) == len(dataset)
    again = orl.Dataset.open(npz)
    assert again.observations.tobytes() == dataset.observations.tobytes()
    with np.load(npz) as z:
        assert z["rewards"].tobytes() == dataset.rewards.tobytes()


def test_python_m_orl_version():
    out = subprocess.run([sys.executable, "-m", "orl", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"orl {orl.__version__}"


def _python(code, **env):
    import os

    e = {k: v for k, v in os.environ.items() if k != "RAYON_NUM_THREADS"}
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=e, check=True).stdout.strip()


def test_one_thread_per_process_by_default_and_set_threads_before_use():
    assert _python("import orl; print(orl.threads())") == "1"
    assert _python("import orl; print(orl.threads())", RAYON_NUM_THREADS="2") == "2"
    out = _python(
        "import orl\n"
        "orl.set_threads(2)\n"
        "print(orl.threads())\n"
        "try:\n"
        "    orl.set_threads(3)\n"
        "except ValueError as e:\n"
        "    print('refused:', e)\n"
    )
    first, second = out.splitlines()
    assert first == "2"
    assert second.startswith("refused:") and "already has 2 thread(s)" in second
