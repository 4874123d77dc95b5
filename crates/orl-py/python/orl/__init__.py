"""orl: offline reinforcement learning, implemented in Rust.

Build a dataset from NumPy arrays, a pyarrow table or a file; train CQL, IQL, BCQ, BC or
TD3+BC on it; evaluate the policy on any Gymnasium environment (or orl's own ports, which
match Gymnasium step for step and reset for reset); estimate its value off-policy.

>>> import numpy as np, orl
>>> n = 200
>>> ds = orl.Dataset.from_numpy(
...     observations=np.zeros((n, 3), np.float32), actions=np.zeros((n, 1), np.float32),
...     rewards=np.zeros(n, np.float32), terminals=np.zeros(n, bool),
...     timeouts=np.arange(n) % 100 == 99)
>>> len(ds), ds.num_episodes
(200, 2)

Everything long (reading, training, OPE) runs in Rust with the GIL released. Errors are
``ValueError`` (bad data or settings, naming the field), ``OSError`` (files) or
``RuntimeError`` (a diverged run), with the same messages as the ``orl`` command.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _orl
from ._orl import __version__, MUJOCO_ENABLED, algorithms, environments, set_threads, threads

__all__ = [
    "Dataset",
    "Policy",
    "convert",
    "train",
    "load",
    "evaluate",
    "ope",
    "algorithms",
    "environments",
    "set_threads",
    "threads",
    "MUJOCO_ENABLED",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]


def _to_wire(name: str, array: Any) -> Tuple[str, str, List[int], bytes]:
    """One NumPy array as ``(key, dtype, shape, bytes)`` for the Rust side, which checks the
    dtype and the shape with the ``.npz`` reader's rules and names ``name`` in its errors."""
    a = np.asarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    a = np.ascontiguousarray(a)
    return (name, a.dtype.str, list(a.shape), a.tobytes())


def _from_wire(wire: Optional[Tuple[str, List[int], bytes]]) -> Optional[np.ndarray]:
    if wire is None:
        return None
    dtype, shape, data = wire
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)


class Dataset:
    """An offline-RL dataset: ``N`` transitions ``(s, a, r, s', terminal, timeout)`` in
    episodes, validated on construction (lengths, dtypes, episode ends, NaN/inf).

    Build one with :meth:`from_numpy`, :meth:`from_arrow` or :meth:`open`. The columns are
    NumPy arrays (read-only copies): :attr:`observations`, :attr:`actions`, ...
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: "_orl.Dataset") -> None:
        if not isinstance(inner, _orl.Dataset):
            raise TypeError(
                "build a Dataset with Dataset.from_numpy, Dataset.from_arrow or Dataset.open"
            )
        self._inner = inner

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_numpy(
        cls,
        observations: Any,
        actions: Any,
        rewards: Any,
        terminals: Any,
        timeouts: Any = None,
        next_observations: Any = None,
        behavior_log_prob: Any = None,
        episode_ids: Any = None,
        env_id: Optional[str] = None,
        ref_scores: Optional[Tuple[float, float]] = None,
        allow_nonfinite: bool = False,
    ) -> "Dataset":
        """A dataset from arrays in D4RL's layout.

        ``observations`` ``(N, obs_dim)`` float32/float64; ``actions`` ``(N, act_dim)`` float
        (continuous) or ``(N,)`` integers (discrete); ``rewards`` ``(N,)``; ``terminals`` and
        ``timeouts`` ``(N,)`` bool (or 0/1). Episodes end after every terminal or timeout row
        (rows after the last flag form an unterminated episode) unless ``episode_ids`` gives
        them. Without ``next_observations``, ``s'`` is the next row's observation inside an
        episode and unknown on an episode's last row. ``ref_scores`` is ``(random, expert)``
        for normalised scores. NaN/inf is an error unless ``allow_nonfinite``.
        """
        wires = [
            _to_wire("observations", observations),
            _to_wire("actions", actions),
            _to_wire("rewards", rewards),
            _to_wire("terminals", terminals),
        ]
        for key, value in (
            ("timeouts", timeouts),
            ("next_observations", next_observations),
            ("infos/action_log_probs", behavior_log_prob),
            ("infos/episode_id", episode_ids),
        ):
            if value is not None:
                wires.append(_to_wire(key, value))
        inner = _orl.Dataset._from_arrays(
            wires, env_id=env_id, ref_scores=ref_scores, allow_nonfinite=allow_nonfinite
        )
        return cls(inner)

    @classmethod
    def from_arrow(cls, table: Any, allow_nonfinite: bool = False) -> "Dataset":
        """A dataset from a ``pyarrow.Table`` (or any object with ``__arrow_c_stream__``) in
        the orl file's columns (``episode_id``, ``step``, ``observation``, ``action``,
        ``reward``, ``terminal``, ``timeout``, ``next_observation``, optionally
        ``behavior_log_prob``), through the Arrow C data interface."""
        return cls(_orl.Dataset.from_arrow(table, allow_nonfinite=allow_nonfinite))

    @classmethod
    def open(
        cls,
        path: PathLike,
        format: str = "auto",
        allow_nonfinite: bool = False,
        env_id: Optional[str] = None,
        ref_scores: Optional[Tuple[float, float]] = None,
    ) -> "Dataset":
        """Opens orl Parquet (a file or a folder of files) or any format ``orl convert``
        reads: D4RL or d3rlpy HDF5, a Minari dataset folder, ``.npz`` (``format`` = auto,
        parquet, d4rl, minari, d3rlpy, npz)."""
        return cls(
            _orl.Dataset.open(
                os.fspath(path),
                format=format,
                allow_nonfinite=allow_nonfinite,
                env_id=env_id,
                ref_scores=ref_scores,
            )
        )

    # -- output -------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Writes ``.parquet`` (orl's format), ``.hdf5``/``.h5`` (D4RL layout) or ``.npz``,
        atomically (a failed write leaves no file)."""
        self._inner.save(os.fspath(path))

    def to_arrow(self) -> Any:
        """The dataset as a ``pyarrow.Table`` in the orl file's columns; the metadata is on
        the schema (``orl.meta``), so :meth:`from_arrow` restores the spaces."""
        return self._inner.to_arrow()

    def inspect(self) -> Dict[str, Any]:
        """The ``orl inspect --json`` report: counts, episode returns, observation and action
        statistics and data-quality checks, under ``report``; the metadata under ``metadata``."""
        return json.loads(self._inner._inspect_json())

    def plot(self, path: PathLike) -> None:
        """Draws the return and action histograms to a ``.png`` or ``.svg`` file."""
        self._inner.plot(os.fspath(path))

    # -- columns ------------------------------------------------------------------------
    def _col(self, name: str) -> Optional[np.ndarray]:
        return _from_wire(self._inner._column(name))

    @property
    def observations(self) -> np.ndarray:
        """``(N, obs_dim)`` float32."""
        return self._col("observations")  # type: ignore[return-value]

    @property
    def next_observations(self) -> np.ndarray:
        """``(N, obs_dim)`` float32; zeros where :attr:`next_valid` is False."""
        return self._col("next_observations")  # type: ignore[return-value]

    @property
    def next_valid(self) -> np.ndarray:
        """``(N,)`` bool: whether the next observation is known."""
        return self._col("next_valid")  # type: ignore[return-value]

    @property
    def actions(self) -> np.ndarray:
        """``(N, act_dim)`` float32 (continuous) or ``(N,)`` int64 (discrete)."""
        return self._col("actions")  # type: ignore[return-value]

    @property
    def rewards(self) -> np.ndarray:
        """``(N,)`` float32."""
        return self._col("rewards")  # type: ignore[return-value]

    @property
    def terminals(self) -> np.ndarray:
        """``(N,)`` bool."""
        return self._col("terminals")  # type: ignore[return-value]

    @property
    def timeouts(self) -> np.ndarray:
        """``(N,)`` bool."""
        return self._col("timeouts")  # type: ignore[return-value]

    @property
    def behavior_log_prob(self) -> Optional[np.ndarray]:
        """``(N,)`` float64 log-probabilities of the logged actions, when recorded."""
        return self._col("behavior_log_prob")

    @property
    def episode_ids(self) -> np.ndarray:
        """``(N,)`` int64: each row's episode."""
        return self._col("episode_ids")  # type: ignore[return-value]

    @property
    def steps(self) -> np.ndarray:
        """``(N,)`` int64: each row's step inside its episode."""
        return self._col("steps")  # type: ignore[return-value]

    @property
    def obs_dim(self) -> int:
        return self._inner.obs_dim

    @property
    def act_dim(self) -> int:
        return self._inner.act_dim

    @property
    def num_episodes(self) -> int:
        return self._inner.num_episodes

    @property
    def is_discrete(self) -> bool:
        return self._inner.is_discrete

    @property
    def env_id(self) -> Optional[str]:
        return self._inner.env_id

    @property
    def metadata(self) -> Dict[str, Any]:
        """Spaces, environment, reference scores and provenance."""
        return json.loads(self._inner._meta_json())

    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return repr(self._inner)


def convert(
    src: PathLike,
    dst: PathLike,
    format: str = "auto",
    allow_nonfinite: bool = False,
    env_id: Optional[str] = None,
    ref_scores: Optional[Tuple[float, float]] = None,
) -> Dataset:
    """``orl convert``: reads ``src`` (D4RL/d3rlpy HDF5, Minari, ``.npz`` or orl Parquet) and
    writes ``dst`` in the format its extension names (``.parquet``, ``.hdf5``, ``.npz``);
    for a Parquet input ``format`` may name the output format. Returns the dataset."""
    return Dataset(
        _orl.convert(
            os.fspath(src),
            os.fspath(dst),
            format=format,
            allow_nonfinite=allow_nonfinite,
            env_id=env_id,
            ref_scores=ref_scores,
        )
    )


class Policy:
    """A trained policy (:func:`load`). :meth:`act` maps a batch of observations to actions."""

    __slots__ = ("_inner",)

    def __init__(self, inner: "_orl.Policy") -> None:
        self._inner = inner

    def act(self, observations: Any) -> np.ndarray:
        """Actions for ``observations`` of shape ``(batch, obs_dim)`` (or one observation of
        shape ``(obs_dim,)``): ``(batch, act_dim)`` float32 for continuous actions, ``(batch,)``
        int64 for discrete ones (without the batch axis for a single observation)."""
        obs = np.asarray(observations, dtype=np.float32)
        single = obs.ndim == 1
        if single:
            obs = obs[None, :]
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"observations: expected shape (batch, {self.obs_dim}) or ({self.obs_dim},), "
                f"got {tuple(np.shape(observations))}"
            )
        obs = np.ascontiguousarray(obs)
        out = _from_wire(self._inner._act(obs.tobytes(), obs.shape[0]))
        assert out is not None
        return out[0] if single else out

    def export(self, path: PathLike) -> None:
        """``orl export``: the acting network as one safetensors file with a JSON header,
        observation normalisation folded in."""
        self._inner.export(os.fspath(path))

    @property
    def stochastic(self) -> bool:
        """Sample actions instead of taking the mode (default False)."""
        return self._inner.stochastic

    @stochastic.setter
    def stochastic(self, value: bool) -> None:
        self._inner.stochastic = bool(value)

    @property
    def algo(self) -> str:
        return self._inner.algo

    @property
    def obs_dim(self) -> int:
        return self._inner.obs_dim

    @property
    def is_discrete(self) -> bool:
        return self._inner.is_discrete

    @property
    def env_id(self) -> Optional[str]:
        """The environment the policy was trained for, from its checkpoint."""
        return self._inner.env_id_

    @property
    def checkpoint(self) -> str:
        return os.fspath(self._inner.checkpoint)

    def __repr__(self) -> str:
        return repr(self._inner)


def load(path: PathLike) -> Policy:
    """The policy of a run folder (``orl train --out`` / :func:`train`'s ``out``) or a
    ``.safetensors`` checkpoint."""
    return Policy(_orl.load(os.fspath(path)))


class _Progress:
    """A progress bar over the updates: tqdm when installed (``tqdm.auto`` draws a widget in
    notebooks), else a line on stderr at most every 10 %."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.total = 0
        self.pos = 0
        self.shown = -1

    def __call__(self, step: int, total: Optional[int]) -> None:
        if not self.enabled:
            return
        if total is not None:
            self.total, self.pos = total, step
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=step, unit="update")
            except ImportError:
                self.bar = None
            return
        if self.bar is not None:
            self.bar.update(step - self.pos)
        else:
            tenth = 10 * step // max(self.total, 1)
            if tenth > self.shown:
                self.shown = tenth
                print(f"orl: {step}/{self.total} updates", file=sys.stderr, flush=True)
        self.pos = step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.total - self.pos)
            self.bar.close()


def train(
    algo: str,
    dataset: Union[Dataset, PathLike],
    steps: int = 100_000,
    seed: int = 0,
    config: Optional[Dict[str, Any]] = None,
    out: Optional[PathLike] = None,
    eval_env: Optional[str] = None,
    callback: Optional[Callable[[Dict[str, Any]], None]] = None,
    *,
    batch_size: Optional[int] = None,
    normalize_observations: Optional[bool] = None,
    reward_transform: str = "auto",
    gamma: Optional[float] = None,
    eval_every: int = 5000,
    eval_episodes: int = 10,
    log_every: int = 1000,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    progress: Optional[bool] = None,
) -> Policy:
    """Trains ``algo`` (see :func:`algorithms`) on ``dataset`` for ``steps`` updates into the
    run folder ``out`` (``run.json``, ``checkpoint.safetensors``, ``metrics.jsonl``/``.csv``,
    ``status.json``: the layout of ``orl train --out``; default a new
    ``runs/<algo>-seed<seed>-<time>``), and returns the trained policy.

    ``config`` overrides the algorithm's settings (the keys of its ``Config``; unknown keys
    are errors). ``callback(row)`` receives every logged row (averaged losses, diagnostics,
    and ``eval_return`` when ``eval_env`` is evaluated). ``resume=True`` continues the run in
    ``out`` from its checkpoint, bit for bit. A ``KeyboardInterrupt`` (Ctrl-C, or raised by
    the callback) stops the run: the last checkpoint (every ``checkpoint_every`` updates,
    default 10 000) is kept and loadable, ``status.json`` says ``interrupted``, and the
    exception propagates. The progress bar is on by default in a terminal or notebook.
    """
    if not isinstance(dataset, Dataset):
        dataset_path: Optional[str] = os.fspath(dataset)
        dataset = Dataset.open(dataset_path)
    else:
        dataset_path = None
    if out is None:
        import time

        out = os.path.join("runs", f"{algo}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    if progress is None:
        progress = sys.stderr is not None and (
            hasattr(sys.stderr, "isatty") and sys.stderr.isatty() or "ipykernel" in sys.modules
        )
    bar = _Progress(bool(progress))
    try:
        _orl._train(
            algo,
            dataset._inner,
            os.fspath(out),
            steps,
            seed,
            config_json=None if config is None else json.dumps(config),
            batch_size=batch_size,
            normalize_observations=normalize_observations,
            reward_transform=reward_transform,
            gamma=gamma,
            eval_env=eval_env,
            eval_every=eval_every,
            eval_episodes=eval_episodes,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            resume=resume,
            dataset_path=dataset_path,
            callback=callback,
            progress=bar,
        )
    finally:
        bar.close()
    return load(out)


def _gym_action(policy: Policy, obs: Any, env: Any) -> Any:
    a = policy.act(np.asarray(obs, dtype=np.float32))
    if policy.is_discrete:
        return int(a)
    space = getattr(env, "action_space", None)
    dtype = getattr(space, "dtype", None)
    return a.astype(dtype) if dtype is not None else a


def evaluate(
    policy: Union[Policy, PathLike],
    env: Any = None,
    episodes: int = 10,
    seed: int = 0,
    ref_scores: Optional[Tuple[float, float]] = None,
) -> Dict[str, Any]:
    """Runs ``episodes`` episodes of ``policy`` and reports the returns.

    ``env`` is an orl environment id (``"Pendulum-v1"``; default: the one the policy was
    trained for) or any Gymnasium ``Env`` object, your own included. Episode ``i`` is reset
    with ``seed + i`` in both cases, and orl's environments reset exactly as Gymnasium's do,
    so both give the same returns. The policy acts deterministically unless
    ``policy.stochastic`` is set. Returns ``returns``, ``lengths``, ``mean``, ``std``,
    ``min``, ``max`` and, with reference scores (``ref_scores``, the checkpoint's, or D4RL's
    for locomotion), ``normalized_mean`` / ``normalized_std``.
    """
    if not isinstance(policy, Policy):
        policy = load(policy)
    if env is None:
        env = policy.env_id
        if env is None:
            raise ValueError("env: the policy's checkpoint names no environment; pass one")
    if isinstance(env, str):
        if ref_scores is not None:
            raise ValueError("ref_scores: pass them only with a Gymnasium environment object")
        return json.loads(_orl._evaluate_orl(policy._inner, env, episodes=episodes, seed=seed))
    if episodes < 1:
        raise ValueError(f"episodes: expected at least 1, got {episodes}")
    returns: List[float] = []
    lengths: List[int] = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, length, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(_gym_action(policy, obs, env))
            total += float(reward)
            length += 1
            done = bool(terminated) or bool(truncated)
        returns.append(total)
        lengths.append(length)
    spec = getattr(env, "spec", None)
    name = getattr(spec, "id", None) or type(env).__name__
    return json.loads(
        _orl._report(policy._inner, name, seed, returns, lengths, reference=ref_scores)
    )


def ope(
    policy: Union[Policy, PathLike],
    dataset: Union[Dataset, PathLike],
    estimators: Union[str, Sequence[str]] = "all",
    gamma: Optional[float] = None,
    seed: Optional[int] = None,
    config: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]:
    """``orl ope``: off-policy estimates of ``policy``'s value on the logged ``dataset``.

    ``estimators``: ``"all"`` or names among is, wis, pdis, wpdis, dr, wdr, ris, fqe, model.
    ``gamma`` defaults to the policy's training discount. ``config`` holds any ``orl ope``
    configuration field (``fqe``, ``model``, ``behavior``, ``resamples``, ``level``, ``clip``).
    Returns one dict per estimator (``estimator``, ``value``, ``low``, ``high`` and
    ``std_err`` of the bootstrap interval, ``n``, ``ess``, ``max_weight``, ``behavior``,
    ``warnings``, ``target``), ready for ``pandas.DataFrame``.
    """
    if not isinstance(policy, Policy):
        policy = load(policy)
    if not isinstance(dataset, Dataset):
        dataset = Dataset.open(dataset)
    names = estimators if isinstance(estimators, str) else ",".join(estimators)
    report = json.loads(
        _orl._ope(
            policy._inner,
            dataset._inner,
            estimators=names,
            gamma=gamma,
            seed=seed,
            config_json=None if config is None else json.dumps(config),
        )
    )
    rows = []
    for e in report["estimates"]:
        interval = e.pop("interval", None) or {}
        e["low"] = interval.get("low")
        e["high"] = interval.get("high")
        e["std_err"] = interval.get("std_err")
        e["target"] = report.get("target")
        rows.append(e)
    return rows
