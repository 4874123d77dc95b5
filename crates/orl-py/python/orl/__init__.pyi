"""Type stubs of the `orl` package (the public API of `orl/__init__.py`)."""

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike[str]]

__version__: str
MUJOCO_ENABLED: bool

def algorithms() -> List[Tuple[str, str]]:
    """The registry's algorithms as ``(name, summary)`` pairs."""

def environments() -> List[str]:
    """The Gymnasium ids orl's environments implement in this build."""

def set_threads(n: int) -> None:
    """Threads for orl's training in this process (default 1); call before training."""

class Dataset:
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
    ) -> Dataset: ...
    @classmethod
    def from_arrow(cls, table: Any, allow_nonfinite: bool = False) -> Dataset: ...
    @classmethod
    def open(
        cls,
        path: PathLike,
        format: str = "auto",
        allow_nonfinite: bool = False,
        env_id: Optional[str] = None,
        ref_scores: Optional[Tuple[float, float]] = None,
    ) -> Dataset: ...
    def save(self, path: PathLike) -> None: ...
    def to_arrow(self) -> Any: ...
    def inspect(self) -> Dict[str, Any]: ...
    def plot(self, path: PathLike) -> None: ...
    @property
    def observations(self) -> np.ndarray: ...
    @property
    def next_observations(self) -> np.ndarray: ...
    @property
    def next_valid(self) -> np.ndarray: ...
    @property
    def actions(self) -> np.ndarray: ...
    @property
    def rewards(self) -> np.ndarray: ...
    @property
    def terminals(self) -> np.ndarray: ...
    @property
    def timeouts(self) -> np.ndarray: ...
    @property
    def behavior_log_prob(self) -> Optional[np.ndarray]: ...
    @property
    def episode_ids(self) -> np.ndarray: ...
    @property
    def steps(self) -> np.ndarray: ...
    @property
    def obs_dim(self) -> int: ...
    @property
    def act_dim(self) -> int: ...
    @property
    def num_episodes(self) -> int: ...
    @property
    def is_discrete(self) -> bool: ...
    @property
    def env_id(self) -> Optional[str]: ...
    @property
    def metadata(self) -> Dict[str, Any]: ...
    def __len__(self) -> int: ...

def convert(
    src: PathLike,
    dst: PathLike,
    format: str = "auto",
    allow_nonfinite: bool = False,
    env_id: Optional[str] = None,
    ref_scores: Optional[Tuple[float, float]] = None,
) -> Dataset: ...

class Policy:
    def act(self, observations: Any) -> np.ndarray: ...
    def export(self, path: PathLike) -> None: ...
    stochastic: bool
    @property
    def algo(self) -> str: ...
    @property
    def obs_dim(self) -> int: ...
    @property
    def is_discrete(self) -> bool: ...
    @property
    def env_id(self) -> Optional[str]: ...
    @property
    def checkpoint(self) -> str: ...

def load(path: PathLike) -> Policy: ...
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
) -> Policy: ...
def evaluate(
    policy: Union[Policy, PathLike],
    env: Any = None,
    episodes: int = 10,
    seed: int = 0,
    ref_scores: Optional[Tuple[float, float]] = None,
) -> Dict[str, Any]: ...
def ope(
    policy: Union[Policy, PathLike],
    dataset: Union[Dataset, PathLike],
    estimators: Union[str, Sequence[str]] = "all",
    gamma: Optional[float] = None,
    seed: Optional[int] = None,
    config: Optional[Dict[str, Any]] = None,
) -> List[Dict[str, Any]]: ...
