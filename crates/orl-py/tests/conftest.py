"""Shared fixtures: a small Pendulum-v1 dataset logged from Gymnasium itself by a noisy
linear controller, a ~ N(-0.5 thdot, 0.3^2) (its log-probabilities recorded, so every OPE
estimator applies), and a BC policy trained on it once per session."""

import math

import numpy as np
import pytest

import orl

EPISODES = 12
HORIZON = 200
SIGMA = 0.3


def pendulum_arrays(episodes: int = EPISODES, seed: int = 0):
    gymnasium = pytest.importorskip("gymnasium")
    env = gymnasium.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                             "terminals", "timeouts", "means")}
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            a = np.float32(-0.5 * obs[2] + SIGMA * rng.standard_normal(1))
            nxt, r, term, trunc, _ = env.step(a)
            cols["observations"].append(obs)
            cols["actions"].append(a)
            cols["means"].append(-0.5 * obs[2])
            cols["rewards"].append(r)
            cols["next_observations"].append(nxt)
            cols["terminals"].append(term)
            cols["timeouts"].append(trunc)
            obs, done = nxt, term or trunc
    out = {
        "observations": np.asarray(cols["observations"], np.float32),
        "actions": np.asarray(cols["actions"], np.float32),
        "rewards": np.asarray(cols["rewards"], np.float32),
        "next_observations": np.asarray(cols["next_observations"], np.float32),
        "terminals": np.asarray(cols["terminals"], bool),
        "timeouts": np.asarray(cols["timeouts"], bool),
    }
    # The Gaussian's log-density of each logged (float32) action.
    z = (out["actions"][:, 0].astype(np.float64) - np.asarray(cols["means"])) / SIGMA
    out["behavior_log_prob"] = -0.5 * z * z - math.log(SIGMA * math.sqrt(2 * math.pi))
    return out


@pytest.fixture(scope="session")
def arrays():
    return pendulum_arrays()


@pytest.fixture(scope="session")
def dataset(arrays):
    return orl.Dataset.from_numpy(**arrays, env_id="Pendulum-v1")


@pytest.fixture(scope="session")
def bc_run(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp("runs") / "bc"
    policy = orl.train("bc", dataset, steps=300, seed=0, out=out, log_every=100,
                       checkpoint_every=100, config={"hidden": [32, 32]}, progress=False)
    return out, policy
