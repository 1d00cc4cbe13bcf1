"""Almgren-Chriss closed forms against the paper's numbers (docs/METHODS.md, section 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sb3_exec.analytic import ACModel, ac_model, analytic_optimum_bps
from sb3_exec.config import make_config

PAPER = ACModel(
    X=1e6,
    N=5,
    tau=1.0,
    sigma=0.30 * 50 / math.sqrt(250),
    eps=0.0625,
    eta=2.5e-6,
    gamma=2.5e-7,
    lam=1e-6,
)


def test_paper_example():
    x = PAPER.holdings()
    assert PAPER.kappa == pytest.approx(0.6063, abs=5e-5)  # the paper prints 4 digits
    np.testing.assert_allclose(x, [1e6, 542_380.7, 290_295.1, 148_216.1, 62_303.2, 0.0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(-np.diff(x), [457_619.3, 252_085.6, 142_079.0, 85_912.9, 62_303.2], rtol=1e-6)
    assert PAPER.expected_cost(x) == pytest.approx(910_477.8, rel=1e-6)
    assert PAPER.variance(x) == pytest.approx(3.63868e11, rel=1e-6)
    assert PAPER.objective(x) / 5e7 * 1e4 == pytest.approx(254.87, abs=0.01)


def test_paper_twap():
    twap = np.linspace(1e6, 0, 6)
    assert PAPER.expected_cost(twap) == pytest.approx(662_500, rel=1e-9)
    assert math.sqrt(PAPER.variance(twap)) == pytest.approx(1_039_230, rel=1e-6)
    assert PAPER.objective(twap) / 5e7 * 1e4 == pytest.approx(348.5, rel=1e-9)


def test_rounded_sigma_gives_the_numbers_the_method_notes_warn_about():
    rounded = ACModel(**{**PAPER.__dict__, "sigma": 0.95})
    assert rounded.kappa == pytest.approx(0.6071, abs=5e-5)
    assert rounded.expected_cost(rounded.holdings()) == pytest.approx(911_227, rel=1e-5)


def test_closed_form_is_the_minimum():
    """Any perturbation of the interior holdings raises E + lam Var (a wrong formula fails)."""
    x = PAPER.holdings()
    best = PAPER.objective(x)
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = x.copy()
        y[1:-1] += rng.normal(0, 5_000, size=4)
        assert PAPER.objective(y) > best


def test_zero_risk_aversion_is_twap():
    model = ACModel(**{**PAPER.__dict__, "lam": 0.0})
    np.testing.assert_allclose(model.holdings(), np.linspace(1e6, 0, 6))


def test_config_mapping_and_optimum():
    assert ac_model(make_config("ac2000")).kappa == pytest.approx(PAPER.kappa, rel=1e-12)
    assert analytic_optimum_bps(make_config("ac2000")) == pytest.approx(254.8692, rel=1e-6)
    assert analytic_optimum_bps(make_config("seed")) is None  # impact proportional to price
    # a cap that the optimal schedule would break: no closed form
    assert analytic_optimum_bps(make_config("ac2000", max_participation=0.05)) is None


def test_grid_floors():
    """docs/METHODS.md section 2: 0.703% for 12 TWAP multiples 0..4, 0.153% for 21, 0.020% for 41."""
    from sb3_exec.analytic import grid_floor_pct

    cfg = make_config("ac2000")
    assert grid_floor_pct(cfg) == pytest.approx(0.703, abs=5e-4)
    grid21 = tuple(round(0.2 * i, 1) for i in range(21))
    assert grid_floor_pct(cfg.replace(twap_multiples=grid21)) == pytest.approx(0.153, abs=5e-4)
    grid41 = tuple(round(0.1 * i, 1) for i in range(41))
    assert grid_floor_pct(cfg.replace(twap_multiples=grid41)) == pytest.approx(0.020, abs=5e-4)
    assert grid_floor_pct(cfg, "fraction") == 0.0
    assert grid_floor_pct(cfg, "continuous") < 1e-3  # the AC schedule is within multiples 0..4
    # the dynamic programme agrees with brute force
    for mode in ("twap_multiple", "fraction_grid"):
        assert grid_floor_pct(cfg, mode, brute_force_limit=1) == pytest.approx(grid_floor_pct(cfg, mode), abs=1e-5)
    # ac60: TWAP multiples capped at 4 cannot express the front-loaded optimum
    ac60 = make_config("ac60")
    assert grid_floor_pct(ac60) > 50 and grid_floor_pct(ac60, "fraction_grid") < 0.5
    with pytest.raises(ValueError, match="preset"):
        grid_floor_pct(make_config("seed"))
    with pytest.raises(ValueError, match="action_mode"):
        grid_floor_pct(cfg, "participation")
