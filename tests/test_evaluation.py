"""evaluate(): the rollout loop, its tables and the paired statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sb3_exec import POV, TWAP, AlmgrenChriss, Policy, evaluate

BASE = {"twap": "twap", "ac": "ac", "pov": "pov", "vwap": "vwap", "immediate": "immediate"}


@pytest.fixture(scope="module")
def ac_eval():
    return evaluate(BASE, {"preset": "ac2000"}, seeds=range(2000), trajectories=True)


def test_tables(ac_eval):
    ep, steps = ac_eval.episodes, ac_eval.steps
    assert len(ep) == 5 * 2000 and set(ep.policy) == set(BASE)
    for col in [
        "shortfall",
        "shortfall_bps",
        "objective_bps",
        "completion",
        "schedule_cost",
        "schedule_cost_bps",
        "schedule_objective_bps",
        "risk_bps",
        "mean_participation",
    ]:
        assert col in ep and ep[col].notna().all(), col
    assert {"policy", "seed", "slice", "q_exec", "px_exec", "mid", "part", "q_rem"} <= set(steps)
    # shares traded add up to the order for every episode
    total = steps.groupby(["policy", "seed"]).q_exec.sum()
    np.testing.assert_allclose(total, 1e6, rtol=1e-9)


def test_summary_statistics(ac_eval):
    s = ac_eval.summary()
    assert list(s.index) == list(BASE)
    assert s.loc["twap", "diff_objective_bps"] == 0 and s.loc["twap", "win_rate_objective_bps"] == 0.5
    for p in BASE:
        assert s.loc[p, "objective_bps_lo"] <= s.loc[p, "objective_bps"] <= s.loc[p, "objective_bps_hi"]
    # AC beats TWAP by ~94 bps on the objective, and the paired CI excludes zero
    assert s.loc["ac", "diff_objective_bps_hi"] < -80
    # paired CIs are much narrower than the gap between independent CIs would suggest
    paired = s.loc["ac", "diff_objective_bps_hi"] - s.loc["ac", "diff_objective_bps_lo"]
    unpaired = sum(s.loc[p, "objective_bps_hi"] - s.loc[p, "objective_bps_lo"] for p in ("ac", "twap"))
    assert paired < 0.7 * unpaired
    # regret against the analytic optimum: AC's schedule objective is the optimum exactly
    assert s.loc["ac", "regret_schedule_objective_bps"] == pytest.approx(0, abs=1e-9)
    assert s.loc["twap", "regret_schedule_objective_bps_pct"] == pytest.approx(
        100 * (348.5 - 254.86917) / 254.86917, rel=1e-5
    )
    pd.testing.assert_frame_equal(s, ac_eval.summary())  # seeded bootstrap: reproducible


def test_same_seeds_same_numbers_and_order_independent():
    a = evaluate({"twap": TWAP(), "pov": POV()}, {"preset": "seed"}, seeds=[3, 1, 2]).episodes
    b = evaluate({"pov": POV(), "twap": TWAP()}, {"preset": "seed"}, seeds=[3, 1, 2]).episodes
    key = ["policy", "seed"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))


class _NaN(Policy):
    def act(self, cfg, market, state):
        return np.full(len(state.x), np.nan)


def test_bad_evaluate_input():
    with pytest.raises(ValueError, match="reference"):
        evaluate({"ac": AlmgrenChriss()}, {"preset": "ac2000"}, seeds=[0]).summary("twap")
    with pytest.raises(ValueError, match="seeds"):
        evaluate({"twap": TWAP()}, {"preset": "seed"}, seeds=[1, 1])
    with pytest.raises(ValueError, match="non-finite"):
        evaluate({"nan": _NaN()}, {"preset": "seed"}, seeds=[0])
    with pytest.raises(ValueError, match="policy"):
        evaluate({"x": "nonsense"}, {"preset": "seed"}, seeds=[0])
    with pytest.raises(ValueError, match="preset"):
        evaluate({"twap": TWAP()}, {"preset": "bad"}, seeds=[0])


def test_median_difference_and_gain_loss_ratio_against_the_reference():
    """Ning, Lin & Jaimungal's metrics on hand-made episodes: differences -2, -1, +1, 0."""
    from sb3_exec import make_config
    from sb3_exec.evaluation import Evaluation, gain_loss

    values = {"ref": [10.0, 10.0, 10.0, 10.0], "b": [8.0, 9.0, 11.0, 10.0], "never_worse": [9.0, 10.0, 10.0, 9.5]}
    rows = [
        {"policy": p, "seed": i, "shortfall_bps": v, "objective_bps": v, "schedule_objective_bps": v, "completion": 1.0}
        for p, vs in values.items()
        for i, v in enumerate(vs)
    ]
    s = Evaluation(pd.DataFrame(rows), None, make_config("seed"), None).summary(reference="ref", n_resamples=50)
    assert s.loc["b", "median_diff_schedule_objective_bps"] == -0.5
    assert s.loc["b", "gain_loss_schedule_objective_bps"] == 1.5  # mean gain 1.5 over mean loss 1
    assert s.loc["never_worse", "gain_loss_schedule_objective_bps"] == float("inf")
    assert np.isnan(s.loc["ref", "gain_loss_schedule_objective_bps"])  # nothing to compare
    assert gain_loss(np.array([1.0, 2.0])) == 0.0  # only losses
