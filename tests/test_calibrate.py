"""Calibration from intraday bars: round trip on the model's own data, and malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.make_sample_bars import DEFAULT_OUT, main as make_sample
from sb3_exec.calibrate import calibrate, simulate_bars
from sb3_exec.config import make_config

ROOT = Path(__file__).resolve().parents[1]


def test_round_trip_recovers_the_model():
    fit = calibrate(simulate_bars("liquidity", days=400, seed=0))
    cfg = make_config("liquidity")
    assert fit["T"] == cfg.T
    assert fit["vol_mu"] == pytest.approx(cfg.vol_mu, rel=0.03)
    assert fit["volume_u_shape"] == pytest.approx(cfg.volume_u_shape, abs=0.15)
    assert fit["volume_phi"] == pytest.approx(cfg.volume_phi, abs=0.03)
    assert fit["volume_innov_sd"] == pytest.approx(cfg.volume_innov_sd, abs=0.03)
    assert fit["spread_bps"] == pytest.approx(cfg.spread_bps, rel=0.03)
    assert fit["spread_phi"] == pytest.approx(cfg.spread_phi, abs=0.03)
    assert fit["spread_innov_sd"] == pytest.approx(cfg.spread_innov_sd, abs=0.03)
    per_bar = fit["sigma"] * np.sqrt(fit["dt"])
    assert per_bar == pytest.approx(cfg.sigma * np.sqrt(cfg.dt), rel=0.03)
    # and the fit is a valid config
    make_config("liquidity", **fit)
    # a different truth gives a different fit: the test can fail
    other = calibrate(simulate_bars("liquidity", days=400, seed=0, volume_phi=0.3))
    assert other["volume_phi"] == pytest.approx(0.3, abs=0.05)


def test_bid_ask_input_equals_spread_input():
    bars = simulate_bars(days=5)
    mid = bars.price
    ba = bars.drop(columns="spread").assign(bid=mid - bars.spread / 2, ask=mid + bars.spread / 2)
    a, b = calibrate(bars), calibrate(ba)
    for k in a:
        assert a[k] == (b[k] if isinstance(a[k], str) else pytest.approx(b[k], rel=1e-9)), k


def _bad(mutate):
    bars = simulate_bars(days=3)
    return mutate(bars)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda b: b.drop(columns="volume"), "missing column"),
        (lambda b: b.drop(columns="spread"), "spread"),
        (lambda b: b.iloc[::-1].reset_index(drop=True), "not sorted"),
        (lambda b: pd.concat([b.iloc[:1], b]).reset_index(drop=True), "duplicate times"),
        (lambda b: b.assign(price=b.price.where(b.index != 5, -1.0)), "non-positive"),
        (lambda b: b.assign(volume=b.volume.where(b.index != 7, 0.0)), "non-positive"),
        (lambda b: b.assign(volume=b.volume.where(b.index != 9, np.nan)), "NaN"),
        (lambda b: b.assign(time="not a time"), "time"),
        (lambda b: b.iloc[:-1], "different numbers of bars"),
    ],
)
def test_malformed_input_is_rejected_with_the_problem_named(mutate, message):
    with pytest.raises(ValueError, match=message):
        calibrate(_bad(mutate))


def test_the_shipped_sample_is_made_by_the_script(tmp_path):
    out = tmp_path / "bars.csv"
    make_sample(["--out", str(out)])
    assert out.read_bytes() == DEFAULT_OUT.read_bytes()
    fit = calibrate(DEFAULT_OUT)
    assert fit["T"] == 40 and 0.5 < fit["volume_phi"] < 0.95
