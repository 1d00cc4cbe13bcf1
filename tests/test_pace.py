"""The pace features and the interfaces on the slice's volume and the expected remaining volume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import sb3_exec
from sb3_exec import evaluate, make_config
from sb3_exec.dynamics import PACE_NAMES, obs_names
from sb3_exec.market import draw_market, remaining_volume, stationary_var, volume_profile
from sb3_exec.policies import ModelPolicy


def realized_remaining(volume: np.ndarray) -> np.ndarray:
    return volume[:, ::-1].cumsum(axis=1)[:, ::-1]


def test_the_remaining_volume_forecast_is_unbiased_and_a_plausible_bug_is_not():
    """E[sum_{k>=t} V_k | V_t]: the realized remaining volume over the forecast averages 1 within
    0.5% at every slice over 40,000 episodes (its SE there is ~0.1-0.3%); the forecast without
    the lognormal correction (exp(phi^k z) alone, a plausible slip) is off by 1.7-13%."""
    cfg = make_config("liquidity", pace_features=True)
    market = draw_market(cfg, np.arange(1, 40_001, dtype=np.uint64))
    real = realized_remaining(market.volume)
    ratio = (real / market.remaining).mean(axis=0)
    assert np.abs(ratio - 1).max() < 0.005
    assert ratio[-1] == 1.0  # the last slice: its own volume, known
    # the slip: drop the -s2 pk^2 / 2 term of the conditional mean
    s2 = stationary_var(cfg.volume_phi, cfg.volume_innov_sd)
    mean_v = cfg.vol_mu * volume_profile(cfg)
    z = np.log(market.volume / mean_v) + 0.5 * s2
    wrong = market.volume.copy()
    for lag in range(1, cfg.T):
        wrong[:, : cfg.T - lag] += mean_v[lag:] * np.exp(cfg.volume_phi**lag * z[:, : cfg.T - lag])
    bad = (real / wrong).mean(axis=0)[:-1]
    assert np.abs(bad - 1).min() > 0.015 and np.abs(bad - 1).max() > 0.1


def test_the_forecast_with_constant_volume_is_the_volume_left():
    cfg = make_config("ac2000", pace_features=True)
    market = draw_market(cfg, np.arange(3, dtype=np.uint64))
    expected = cfg.vol_mu * (cfg.T - np.arange(cfg.T))
    np.testing.assert_allclose(market.remaining, np.broadcast_to(expected, (3, cfg.T)), rtol=1e-12)
    np.testing.assert_array_equal(remaining_volume(cfg, market.volume), market.remaining)
    assert not make_config("ac2000").pace_features  # off by default; the market has the forecast anyway
    np.testing.assert_array_equal(
        draw_market(make_config("ac2000"), np.arange(3, dtype=np.uint64)).remaining, market.remaining
    )


def test_pace_features_in_the_observation():
    """The last two features: the expected remaining volume over the day's expected volume and
    the required participation x / R_t as a share of the 25% cap; both 0 after the deadline."""
    env = gym.make(sb3_exec.ENV_ID, preset="liquidity", pace_features=True, action_mode="pace_multiple")
    cfg = env.unwrapped.cfg
    assert obs_names(cfg)[-2:] == PACE_NAMES and env.observation_space.shape == (8,)
    obs, _ = env.reset(seed=11)
    market = draw_market(cfg, np.array([11], dtype=np.uint64))
    R0 = market.remaining[0, 0]
    np.testing.assert_allclose(obs[-2:], [R0 / (cfg.T * cfg.vol_mu), cfg.Q0 / R0 / 0.25], rtol=1e-6)
    one = cfg.twap_multiples.index(1.0)
    obs, *_ = env.step(one)  # sell x V_0 / R_0
    x1 = cfg.Q0 * (1 - market.volume[0, 0] / R0)
    np.testing.assert_allclose(obs[1], x1 / cfg.Q0, rtol=1e-6)
    np.testing.assert_allclose(obs[-1], x1 / market.remaining[0, 1] / 0.25, rtol=1e-6)
    for _ in range(cfg.T - 1):
        obs, _, term, _, _ = env.step(one)
    assert term and obs[-1] == 0 and obs[-2] == 0
    lob = make_config("lob", pace_features=True)
    assert obs_names(lob)[-5:] == ("signal", "depth_imbalance", "last_volume", *PACE_NAMES)


def test_pace_multiple_one_is_twap_on_constant_volume_and_tracks_the_forecast_on_liquidity():
    """Trading x V_t / R_t every slice is TWAP where volume is constant (ac2000: 348.500 bps, the
    same to 1e-9), and where it moves it sells in proportion to the expected remaining volume:
    the first trade is Q0 V_0 / R_0."""

    class Always:
        def __init__(self, a):
            self.a, self.action_space = a, None

        def predict(self, obs, deterministic=True):
            return np.full(len(obs), self.a), None

    for preset in ("ac2000", "liquidity"):
        cfg = make_config(preset, pace_features=True)
        one = cfg.twap_multiples.index(1.0)
        ev = evaluate(
            {"pace": ModelPolicy(Always(one), action_mode="pace_multiple", pace_features=True), "twap": "twap"},
            {"preset": preset},
            range(200),
            trajectories=True,
        )
        m = ev.episodes.groupby("policy").schedule_objective_bps.mean()
        if preset == "ac2000":
            assert m["pace"] == pytest.approx(m["twap"], abs=1e-9) and m["twap"] == pytest.approx(348.500, abs=1e-3)
        else:
            steps = ev.steps[ev.steps.policy == "pace"]
            market = draw_market(cfg, np.arange(200, dtype=np.uint64))
            first = steps[steps.slice == 0]
            # the first trade: Q0 V_0 / R_0 (below the 25% cap on these episodes)
            np.testing.assert_allclose(
                first.q_exec.to_numpy(), cfg.Q0 * market.volume[:, 0] / market.remaining[:, 0], rtol=1e-9
            )
            # trading with the volume beats the clock on most episodes (median 12.3 against 16.5
            # bps), but not on average: behind when late volume collapses, it pays the deadline
            med = ev.episodes.groupby("policy").schedule_objective_bps.median()
            assert med["pace"] < med["twap"] - 3 and m["pace"] > m["twap"]


def test_pace_modes_need_the_pace_features():
    with pytest.raises(ValueError, match="pace_features"):
        make_config("liquidity", action_mode="pace_multiple")
    with pytest.raises(ValueError, match="pace_features"):
        make_config("liquidity", action_mode="pace_continuous", pace_features=1)


def test_participation_rate_trades_a_share_of_the_slice_volume():
    env = gym.make(sb3_exec.ENV_ID, preset="liquidity", action_mode="participation_rate")
    env.reset(seed=4)
    volume = draw_market(env.unwrapped.cfg, np.array([4], dtype=np.uint64)).volume[0]
    _, _, _, _, info = env.step(np.array([0.0], dtype=np.float32))  # half the 25% cap
    assert info["q_exec"] == pytest.approx(0.125 * volume[0], rel=1e-12)
    _, _, _, _, info = env.step(np.array([-1.0], dtype=np.float32))
    assert info["q_exec"] == 0.0
