"""Config validation and presets."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest

import sb3_exec
from sb3_exec.config import PRESETS, ExecConfig, make_config

NOTEBOOK_DEFAULTS = dict(
    T=40,
    Q0=100_000,
    p0=100.0,
    sigma=0.02,
    dt=1 / 78,
    kappa=1e-6,
    eta=5e-5,
    spread_bps=5,
    vol_mu=2e6,
    vol_sd=5e5,
    noise_sd=0.002,
    max_participation=0.2,
    action_levels=7,
)


def test_seed_preset_keeps_every_notebook_default():
    cfg = make_config("seed")
    for name, value in NOTEBOOK_DEFAULTS.items():
        assert getattr(cfg, name) == value, name
    assert cfg.side == "sell" and cfg.deadline_penalty == 5.0 and cfg.risk_aversion == 0.0
    assert cfg == ExecConfig()


def test_ac2000_preset_is_the_paper_example():
    cfg = make_config("ac2000")
    assert (cfg.T, cfg.Q0, cfg.p0, cfg.dt) == (5, 1e6, 50.0, 1.0)
    assert cfg.sigma_dollars == pytest.approx(0.9486833, rel=1e-7)
    assert cfg.spread_bps * 1e-4 * cfg.p0 == pytest.approx(0.0625)
    assert (cfg.kappa, cfg.eta, cfg.risk_aversion) == (2.5e-7, 2.5e-6, 1e-6)
    assert cfg.temp_impact == "rate" and not cfg.own_impact and not cfg.shock_before_trade


def test_overrides_and_buy_flag():
    cfg = make_config("ac2000", T=10, buy=True)
    assert cfg.T == 10 and cfg.side == "buy" and cfg.sign == -1 and cfg.p0 == 50.0
    assert ExecConfig(buy=True).side == "buy"
    assert make_config(cfg, buy=False).side == "sell"
    assert cfg.replace(Q0=5.0).Q0 == 5.0


BAD = [
    ("T", 0),
    ("T", -3),
    ("T", 2.5),
    ("Q0", 0),
    ("Q0", -1.0),
    ("p0", 0.0),
    ("sigma", -0.1),
    ("kappa", -1e-7),
    ("eta", -1e-6),
    ("spread_bps", -1),
    ("vol_mu", 0),
    ("vol_sd", -1),
    ("noise_sd", -0.1),
    ("max_participation", 0.0),
    ("max_participation", 1.5),
    ("action_levels", 1),
    ("risk_aversion", -1e-6),
    ("deadline_penalty", -1),
    ("side", "short"),
    ("action_mode", "market"),
    ("reward", "pnl"),
    ("temp_impact", "cubic"),
    ("twap_multiples", (0.5, 1.0)),
    ("twap_multiples", (1.0, 0.0, 2.0)),
    ("own_impact", "yes"),
]


@pytest.mark.parametrize("field,value", BAD)
def test_bad_input_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_config("seed", **{field: value})


NUMERIC = [*NOTEBOOK_DEFAULTS, "risk_aversion", "deadline_penalty"]


@pytest.mark.parametrize("field", NUMERIC)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_rejected_everywhere(field, value):
    with pytest.raises(ValueError, match=field):
        make_config("ac2000", **{field: value})


def test_unknown_preset_field_and_conflicting_side():
    with pytest.raises(ValueError, match="preset"):
        make_config("nasdaq")
    with pytest.raises(ValueError, match="volatility"):
        make_config("seed", volatility=0.1)
    with pytest.raises(ValueError, match="buy"):
        make_config("seed", buy=True, side="sell")


def test_bad_input_fails_at_gym_make_before_anything_runs():
    with pytest.raises(ValueError, match="max_participation"):
        gym.make(sb3_exec.ENV_ID, preset="seed", max_participation=2.0)
    with pytest.raises(ValueError, match="preset"):
        gym.make(sb3_exec.ENV_ID, preset="nope")


def test_presets_are_all_valid():
    for name in PRESETS:
        make_config(name)
