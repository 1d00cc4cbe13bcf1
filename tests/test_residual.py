"""The residual interface: an agent scales a base policy's trade (the MPC planned per episode by
default, or any causal baseline), one implementation for the wrappers and ``evaluate``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sb3_exec
from sb3_exec import ExecutionEnv, make_config, make_env, make_vec_env
from sb3_exec.actions import residual_multiplier
from sb3_exec.baselines import TWAP, Adaptive
from sb3_exec.dynamics import ARRAY, SCALAR, initial_state, observe
from sb3_exec.evaluation import evaluate
from sb3_exec.market import draw_market
from sb3_exec.planning import mpc_orders
from sb3_exec.policies import ModelPolicy, ResidualBase
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


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("liquidity", {}),
        ("lob", {}),  # the dark venue: the current slice's dark capacity sits in each row's own column
        ("liquidity", {"T": 12, "participation_change_penalty": 20.0}),  # coupled: planned in groups
        ("ac2000", {}),  # a risk term: the closed form over the slices left
    ],
)
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
    kw = {"preset": preset, "action_mode": "residual"}  # the default interface of bare models
    ev = evaluate(
        {"zero": Constant(0.0, dims), "more": Constant(1.0, dims), "adaptive": Adaptive()}, kw, seeds=range(40)
    )
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
    base = ResidualBase(cfg)
    lit, dark = base.orders(market, state)
    obs = np.concatenate([observe(cfg, market, state), base.features(state.x, lit, dark)], axis=1)
    np.testing.assert_array_equal(lit, mpc_orders(cfg, market, state, per_row=True)[0])
    assert obs.shape == (5, 7)
    np.testing.assert_allclose(obs[:, -1], np.minimum(lit / state.x, 1.0), rtol=1e-6)

    env = gym.make(sb3_exec.ENV_ID, preset="liquidity", action_mode="residual", residual_range=3.0)
    assert env.observation_space.shape == (7,)
    obs, _ = env.reset(seed=3)
    planned = obs[-1] * env.unwrapped.cfg.Q0
    _, _, _, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["q_exec"] == pytest.approx(min(3 * planned, 0.25 * env.unwrapped._path[0][0]), rel=1e-6)


def test_residual_config_errors():
    with pytest.raises(ValueError, match="action_mode"):
        make_env("seed", action_mode="residual")  # the notebook's impact: the MPC cannot solve it
    with pytest.raises(ValueError, match="action_mode"):
        gym.make(sb3_exec.ENV_ID, preset="seed", action_mode="residual")
    with pytest.raises(ValueError, match="residual_range"):
        make_config("liquidity", action_mode="residual", residual_range=1.0)
    with pytest.raises(ValueError, match="residual_base"):
        make_env("liquidity", action_mode="residual", residual_base="oracle")  # sees the future
    with pytest.raises(ValueError, match="residual_base"):
        make_vec_env(2, "liquidity", action_mode="residual", residual_base="mpc")  # no such baseline
    # the bare env does not know the base: it says how to build the residual env
    bare = ExecutionEnv("liquidity", action_mode="residual")
    bare.reset(seed=0)
    with pytest.raises(RuntimeError, match="residual"):
        bare.step(np.zeros(1, dtype=np.float32))


def test_residual_on_twap_is_twap_at_zero_and_acts_on_the_notebook_preset():
    """Any causal baseline can be the base: on the notebook's preset (which the MPC cannot solve)
    action 0 reproduces TWAP on every episode, and a multiplier changes the cost."""
    kw = {"preset": "seed", "action_mode": "residual", "residual_base": "twap"}
    zero = ModelPolicy(Constant(0.0, 1), action_mode="residual", residual_base="twap")
    slow = ModelPolicy(Constant(-1.0, 1), action_mode="residual", residual_base="twap")
    ev = evaluate({"zero": zero, "slow": slow, "twap": TWAP()}, {"preset": "seed"}, seeds=range(30))
    by = ev.episodes.pivot(index="seed", columns="policy", values="objective_bps")
    np.testing.assert_array_equal(by["zero"], by["twap"])
    assert (by["slow"] != by["twap"]).all()  # half of TWAP each slice: the deadline sells the rest
    env = make_env(**kw)
    obs, _ = env.reset(seed=5)
    assert obs[-1] == pytest.approx(1 / 40)  # TWAP's first slice as a fraction of the order


def test_residual_on_the_causal_optimum_is_the_optimum_at_zero():
    """The DP can be a residual's base: at action 0 the agent is the causal optimum, on the single
    env (through the wrapper) and in evaluate (the combinator) alike."""
    kw = {"preset": "liquidity", "T": 10}
    zero = ModelPolicy(Constant(0.0, 1), action_mode="residual", residual_base="dp")
    ev = evaluate({"zero": zero, "dp": "dp"}, kw, seeds=range(30))
    by = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    np.testing.assert_array_equal(by["zero"], by["dp"])
    env = make_env(action_mode="residual", residual_base="dp", **kw)
    env.reset(seed=7)
    done = False
    while not done:
        _, _, done, _, info = env.step(np.zeros(1, dtype=np.float32))
    assert info["schedule_objective_bps"] == pytest.approx(by.loc[7, "dp"], abs=1e-9)
