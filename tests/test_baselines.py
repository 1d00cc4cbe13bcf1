"""Baselines: exact costs, Monte Carlo against the closed form, and the policy interface."""

from __future__ import annotations

import numpy as np
import pytest

from sb3_exec import POV, TWAP, VWAP, AlmgrenChriss, Immediate, ModelPolicy, evaluate
from sb3_exec.analytic import ac_model
from sb3_exec.config import make_config

QUIET_SEED = dict(preset="seed", sigma=0.0, noise_sd=0.0, vol_sd=0.0)


def test_seed_preset_exact_twap_and_immediate_costs():
    """docs/METHODS.md section 1: exact TWAP costs $10,125.6 and all-at-once $15,025 on the seed preset."""
    ep = evaluate({"twap": TWAP(), "immediate": Immediate()}, QUIET_SEED, seeds=[0]).episodes
    twap, imm = ep.set_index("policy").shortfall[["twap", "immediate"]]
    assert twap == pytest.approx(10_125.6, abs=0.05)
    assert imm == pytest.approx(15_025, abs=1.0)


@pytest.mark.parametrize("preset", ["ac2000", "ac60"])
@pytest.mark.parametrize("name,policy", [("ac", AlmgrenChriss()), ("twap", TWAP())])
def test_monte_carlo_matches_closed_form(preset, name, policy):
    """10,000 seeded episodes: mean and variance of the shortfall within 3 standard errors."""
    cfg = make_config(preset)
    model = ac_model(cfg)
    x = model.holdings() if name == "ac" else np.linspace(cfg.Q0, 0, cfg.T + 1)
    e, var = model.expected_cost(x), model.variance(x)
    s = evaluate({name: policy}, cfg, seeds=range(10_000)).episodes.shortfall.to_numpy()
    n = len(s)
    assert abs(s.mean() - e) < 3 * np.sqrt(var / n)
    var_se = np.sqrt((np.mean((s - s.mean()) ** 4) - s.var() ** 2) / n)
    assert abs(s.var(ddof=1) - var) < 3 * var_se
    # and the test has teeth: a 5% error in the variance would be detected
    assert 0.05 * var > 3 * var_se


def test_pov_trades_its_rate_of_volume():
    ev = evaluate({"pov": POV(0.05)}, dict(preset="seed"), seeds=[0, 1], trajectories=True)
    steps = ev.steps
    first = steps[steps.slice == 0]
    np.testing.assert_allclose(first.part, 0.05, rtol=1e-12)
    with pytest.raises(ValueError, match="rate"):
        POV(1.5)


def test_vwap_is_twap_on_a_flat_profile_and_ac_is_twap_when_risk_neutral():
    ev = evaluate(
        {"twap": TWAP(), "vwap": VWAP(), "ac": AlmgrenChriss(risk_aversion=0.0)},
        dict(preset="ac2000"),
        seeds=range(50),
    )
    wide = ev.episodes.pivot(index="seed", columns="policy", values="shortfall")
    np.testing.assert_allclose(wide.vwap, wide.twap, rtol=1e-12)
    np.testing.assert_allclose(wide.ac, wide.twap, rtol=1e-12)


def test_participation_cap_binds_every_policy():
    ev = evaluate({"imm": Immediate()}, dict(preset="seed", max_participation=0.01), seeds=[0], trajectories=True)
    assert (ev.steps.part <= 0.01 + 1e-12).all()
    assert ev.steps.q_exec.iloc[0] == pytest.approx(0.01 * ev.steps.q_exec.iloc[0] / ev.steps.part.iloc[0])


class _Greedy:
    """A stand-in for an SB3 model: always the 1.0x TWAP action."""

    def __init__(self, space):
        self.action_space = space

    def predict(self, obs, deterministic=True):
        return np.full(len(obs), 4), None


def test_models_act_through_the_action_mode():
    from sb3_exec.actions import action_space as action_space_for

    cfg = make_config("seed")
    model = _Greedy(action_space_for(cfg))
    ev = evaluate({"model": model, "twap": "twap"}, cfg, seeds=range(20))
    wide = ev.episodes.pivot(index="seed", columns="policy", values="shortfall")
    np.testing.assert_allclose(wide.model, wide.twap, rtol=1e-12)
    with pytest.raises(ValueError, match="action_mode"):
        evaluate({"m": ModelPolicy(model)}, cfg.replace(action_mode="participation"), seeds=[0])


def test_ac60_closed_form_numbers():
    """docs/METHODS.md section 2: on ac60 AC has E=$477,713, SD=$476,456; TWAP E=$227,083, SD=$1,675,828."""
    cfg = make_config("ac60")
    model = ac_model(cfg)
    x = model.holdings()
    assert model.expected_cost(x) == pytest.approx(477_713, abs=1)
    assert np.sqrt(model.variance(x)) == pytest.approx(476_456, abs=1)
    twap = np.linspace(cfg.Q0, 0, cfg.T + 1)
    assert model.expected_cost(twap) == pytest.approx(227_083, abs=1)
    assert np.sqrt(model.variance(twap)) == pytest.approx(1_675_828, abs=1)
    assert -np.diff(x)[0] / (cfg.Q0 / cfg.T) == pytest.approx(13, abs=0.5)  # 13x the TWAP slice
