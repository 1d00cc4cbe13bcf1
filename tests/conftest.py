"""Shared fixtures and test policies."""

from __future__ import annotations

import numpy as np
import pytest

from sb3_exec.baselines import Policy

# a comparison small enough to run in seconds (experiments.compare.CompareConfig's fields)
TINY = dict(
    preset="ac2000",
    agents=["ppo"],
    seeds=2,
    timesteps=512,
    eval_episodes=50,
    validation_episodes=10,
    workers=1,
    hyperparams={"ppo": {"n_steps": 32, "batch_size": 64}},
)


class RandomPolicy(Policy):
    """A causal policy trading a random multiple (0..3) of the remaining-TWAP slice, seeded."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def reset(self, cfg, market) -> None:
        self._rng = np.random.default_rng(self.seed)

    def act(self, cfg, market, state) -> np.ndarray:
        return self._rng.uniform(0, 3, size=len(state.x)) * state.x / np.maximum(cfg.T - state.t, 1)


class Anticipating(Policy):
    """Cheats: reads the next slice's price innovation and sells everything before a drop."""

    def act(self, cfg, market, state) -> np.ndarray:
        rows = np.arange(len(state.t))
        t = np.minimum(state.t, cfg.T - 1)
        nxt = np.minimum(t + 1, cfg.T - 1)
        move = cfg.sign * (market.mid[rows, nxt] - market.mid[rows, t])
        twap = state.x / np.maximum(cfg.T - state.t, 1)
        return np.where(move < 0, state.x, 0.5 * twap)


@pytest.fixture
def random_policy() -> RandomPolicy:
    return RandomPolicy(seed=123)


@pytest.fixture(autouse=True, scope="session")
def _dp_cache(tmp_path_factory):
    """Solved DPs go to a cache of the test session, not the user's home."""
    import os

    old = os.environ.get("SB3_EXEC_CACHE")
    os.environ["SB3_EXEC_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SB3_EXEC_CACHE", None)
    else:
        os.environ["SB3_EXEC_CACHE"] = old
