"""The residual action mode: an agent scales the adaptive MPC's trade, planned per episode."""

from __future__ import annotations

import numpy as np
import pytest

from sb3_exec import ExecutionEnv, make_config
from sb3_exec.baselines import Adaptive, mpc_orders
from sb3_exec.dynamics import ARRAY, SCALAR, initial_state, observe, residual_multiplier
from sb3_exec.evaluation import evaluate
from sb3_exec.market import draw_market
from sb3_exec.rng import as_seeds


class Constant:
    """A stand-in for an SB3 model that always takes the same box action."""

    def __init__(self, value: float, dims: int) -> None:
        self.value, self.dims = value, dims

    def predict(self, obs, deterministic=True):
        return np.full((len(obs), self.dims), self.value, dtype=np.float32), None


def _desynchronized(cfg, n=12):
    """A batch of episodes at different slices with different inventories."""
    market = draw_market(cfg, as_seeds(range(n)))
    state = initial_state(cfg, n)
    state.t = (np.arange(n) * 7) % cfg.T
    state.x = cfg.Q0 * np.linspace(0.2, 1.0, n)
    return market, state


@pytest.mark.parametrize("preset, overrides", [
    ("liquidity", {}),
    ("lob", {}),  # the dark venue: the current slice's dark capacity sits in each row's own column
    ("liquidity", {"T": 12, "participation_change_penalty": 20.0}),  # coupled: planned in groups
    ("ac2000", {}),  # a risk term: the closed form over the slices left
])
def test_mpc_orders_per_episode_equal_planning_each_episode_alone(preset, overrides):
    cfg = make_config(preset, **overrides)
    market, state = _desynchronized(cfg)
    lit, dark = mpc_orders(cfg, market, state, per_row=True)
    for i in range(len(state.t)):
        alone = initial_state(cfg, 1)
        alone.t[:], alone.x[:] = state.t[i], state.x[i]
        lit_i, dark_i = mpc_orders(cfg, market.take(np.array([i])), alone)  # lockstep, T - t slices
        np.testing.assert_allclose(lit[i], lit_i[0], rtol=1e-9, atol=1e-6)
        if cfg.dark_venue:
            np.testing.assert_allclose(dark[i], dark_i[0], rtol=1e-9, atol=1e-6)
    assert lit.min() >= 0 and (lit <= state.x + 1e-6).all() and len(np.unique(lit.round())) > 6


@pytest.mark.parametrize("preset", ["liquidity", "lob"])
def test_residual_action_zero_is_the_adaptive_mpc(preset):
    dims = 2 if preset == "lob" else 1
    kw = {"preset": preset, "action_mode": "residual"}
    ev = evaluate({"zero": Constant(0.0, dims), "more": Constant(1.0, dims), "adaptive": Adaptive()},
                  kw, seeds=range(40))
    by = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    np.testing.assert_allclose(by["zero"], by["adaptive"], rtol=0, atol=1e-8)
    # the action does act: twice the MPC's trade costs more (impact) on most episodes
    assert by["more"].mean() > by["adaptive"].mean() + 1.0 and (by["more"] > by["adaptive"]).mean() > 0.75


def test_residual_multiplier_and_observation():
    cfg = make_config("liquidity", action_mode="residual", residual_range=3.0)
    a = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(residual_multiplier(cfg, ARRAY, a), [1 / 3, 0.5, 1.0, 2.0, 3.0, 3.0])
    assert residual_multiplier(cfg, SCALAR, -0.5) == 0.5
    # -a undoes a, so the action is symmetric around the MPC
    np.testing.assert_allclose(residual_multiplier(cfg, ARRAY, a[:5]) * residual_multiplier(cfg, ARRAY, -a[:5]), 1.0)

    market, state = _desynchronized(cfg, 5)
    obs = observe(cfg, market, state)
    lit, _ = mpc_orders(cfg, market, state, per_row=True)
    assert obs.shape == (5, 7)
    np.testing.assert_allclose(obs[:, -1], np.minimum(lit / state.x, 1.0), rtol=1e-6)

    env = ExecutionEnv("liquidity", action_mode="residual", residual_range=3.0)
    obs, _ = env.reset(seed=3)
    planned = obs[-1] * env.cfg.Q0
    _, _, _, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["q_exec"] == pytest.approx(min(3 * planned, 0.25 * env._path[0][0]), rel=1e-6)


def test_residual_config_errors():
    with pytest.raises(ValueError, match="action_mode"):
        make_config("seed", action_mode="residual")  # the notebook's impact: no MPC
    with pytest.raises(ValueError, match="residual_range"):
        make_config("liquidity", action_mode="residual", residual_range=1.0)
