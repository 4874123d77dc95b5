"""Type stubs of the extension module ``orl._orl`` (compiled from ``crates/orl-py/src``).

Users import ``orl``, whose Python source carries its own annotations (``py.typed``); these
stubs describe the native layer it calls. Arrays cross as ``(dtype, shape, bytes)`` with
NumPy's ``dtype.str``, reports as JSON text.
"""

from typing import Any, Callable, List, Optional, Tuple

__version__: str
MUJOCO_ENABLED: bool

Wire = Tuple[str, List[int], bytes]

def algorithms() -> List[Tuple[str, str]]: ...
def environments() -> List[str]: ...
def set_threads(n: int) -> None: ...
def threads() -> int: ...

class Dataset:
    @staticmethod
    def _from_arrays(
        arrays: List[Tuple[str, str, List[int], bytes]],
        env_id: Optional[str] = None,
        ref_scores: Optional[Tuple[float, float]] = None,
        allow_nonfinite: bool = False,
    ) -> Dataset: ...
    @staticmethod
    def open(
        path: str,
        format: str = "auto",
        allow_nonfinite: bool = False,
        env_id: Optional[str] = None,
        ref_scores: Optional[Tuple[float, float]] = None,
    ) -> Dataset: ...
    @staticmethod
    def from_arrow(table: Any, allow_nonfinite: bool = False) -> Dataset: ...
    def to_arrow(self) -> Any: ...
    def save(self, path: str) -> None: ...
    def plot(self, path: str) -> None: ...
    def _inspect_json(self) -> str: ...
    def _meta_json(self) -> str: ...
    def _column(self, name: str) -> Optional[Wire]: ...
    def __len__(self) -> int: ...
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

def convert(
    src: str,
    dst: str,
    format: str = "auto",
    allow_nonfinite: bool = False,
    env_id: Optional[str] = None,
    ref_scores: Optional[Tuple[float, float]] = None,
) -> Dataset: ...

class Policy:
    def _act(self, observations: bytes, rows: int) -> Wire: ...
    def export(self, path: str) -> None: ...
    stochastic: bool
    @property
    def algo(self) -> str: ...
    @property
    def obs_dim(self) -> int: ...
    @property
    def is_discrete(self) -> bool: ...
    @property
    def env_id_(self) -> Optional[str]: ...
    @property
    def checkpoint(self) -> str: ...

def load(path: str) -> Policy: ...
def _train(
    algo: str,
    dataset: Dataset,
    out: str,
    steps: int,
    seed: int,
    config_json: Optional[str] = None,
    batch_size: Optional[int] = None,
    normalize_observations: Optional[bool] = None,
    reward_transform: str = "auto",
    gamma: Optional[float] = None,
    eval_env: Optional[str] = None,
    eval_every: int = 5000,
    eval_episodes: int = 10,
    log_every: int = 1000,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    dataset_path: Optional[str] = None,
    callback: Optional[Callable[[dict], None]] = None,
    progress: Optional[Callable[[int, Optional[int]], None]] = None,
) -> dict: ...
def _evaluate_orl(policy: Policy, env: str, episodes: int = 10, seed: int = 0) -> str: ...
def _report(
    policy: Policy,
    env_name: str,
    seed: int,
    returns: List[float],
    lengths: List[int],
    reference: Optional[Tuple[float, float]] = None,
) -> str: ...
def _ope(
    policy: Policy,
    dataset: Dataset,
    estimators: str = "all",
    gamma: Optional[float] = None,
    seed: Optional[int] = None,
    config_json: Optional[str] = None,
) -> str: ...
