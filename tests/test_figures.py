"""experiments.figures: the layout helpers on the numbers of the quick comparison, and the
closed-form frontier only where the model has one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.figures import (
    clusters,
    frontier_bps,
    inside_fences,
    policy_groups,
    spread_out,
    zoom_policies,
    zoom_reference,
)
from sb3_exec import make_config

# results/quick/ac2000: mean and SD of the shortfall (bps), and the schedule objective minus TWAP
POLICIES = ["twap", "pov", "vwap", "ac", "immediate", "adaptive", "oracle", "dp", "dqn", "ddqn", "ppo", "ppo_frac"]
SD = np.array([204.5, 92.9, 204.5, 118.4, 0.0, 118.4, 118.4, 118.4, 110.4, 110.7, 112.0, 118.3])
MEAN = np.array([141.2, 278.5, 141.2, 187.7, 512.5, 187.7, 187.7, 187.7, 197.0, 197.3, 195.4, 187.9])
VS_TWAP = np.array([0, -28.5, 0, -93.631, 164.0, -93.631, -93.631, -93.631, -91.835, -91.685, -92.770, -93.561])
REGRET_DP = VS_TWAP + 93.631


def test_policies_on_one_point_share_a_label_and_labels_do_not_overlap():
    groups = clusters(SD, MEAN, (0.015 * np.ptp(SD), 0.015 * np.ptp(MEAN)))
    names = [[POLICIES[i] for i in g] for g in groups]
    assert names == [
        ["twap", "vwap"],
        ["pov"],
        ["ac", "adaptive", "oracle", "dp", "ppo_frac"],
        ["immediate"],
        ["dqn", "ddqn", "ppo"],
    ]
    y = [MEAN[g].mean() for g in groups]
    placed = spread_out(y, 0.055 * np.ptp(MEAN))
    assert np.diff(np.sort(placed)).min() >= 0.055 * np.ptp(MEAN) - 1e-9
    assert list(np.argsort(placed)) == list(np.argsort(y))  # the order of the points is kept
    assert placed[1] == pytest.approx(y[1]) and placed[3] == pytest.approx(y[3])  # alone: not moved


def test_a_far_off_policy_does_not_set_the_axis():
    inside = inside_fences(VS_TWAP)
    assert [p for p, keep in zip(POLICIES, inside, strict=True) if not keep] == ["immediate"]


def _summary() -> pd.DataFrame:
    kind = ["agent" if p in ("dqn", "ddqn", "ppo", "ppo_frac") else "baseline" for p in POLICIES]
    return pd.DataFrame(
        {"kind": kind, "regret_dp_bps": REGRET_DP, "vs_adaptive_schedule_objective_bps": REGRET_DP}, index=POLICIES
    )


def test_the_zoomed_panel_shows_the_agents_against_the_causal_optimum():
    summary = _summary()
    assert zoom_reference(summary) == ("dp", "regret_dp_bps")
    near = zoom_policies(summary, "regret_dp_bps")
    assert near == ["ac", "adaptive", "oracle", "dp", "dqn", "ddqn", "ppo", "ppo_frac"]
    # without dp the MPC is the yardstick; without either there is no zoomed panel
    assert zoom_reference(summary.drop(index="dp", columns="regret_dp_bps"))[0] == "adaptive"
    assert zoom_reference(summary[["kind"]]) is None


def test_policies_are_drawn_in_groups():
    groups = dict(policy_groups(_summary()))
    assert list(groups.values()) == [
        ["twap", "pov", "vwap", "immediate"],
        ["ac", "adaptive", "oracle", "dp"],
        ["dqn", "ddqn", "ppo", "ppo_frac"],
    ]


def test_the_closed_form_frontier_only_where_the_model_is_almgren_chriss():
    assert frontier_bps(make_config("liquidity")) is None
    assert frontier_bps(make_config("seed")) is None
    mean, sd = frontier_bps(make_config("ac2000"))
    # it passes through the paper's optimum (lambda = 1e-6): E $910,477.8, Var 3.63868e11 on $50M
    k = np.argmin(np.abs(mean - 910_477.8 / 5e7 * 1e4))
    assert mean[k] == pytest.approx(182.0956, abs=1e-3)
    assert sd[k] == pytest.approx(np.sqrt(3.63868e11) / 5e7 * 1e4, rel=1e-5)
    assert np.all(np.diff(sd) < 0) and np.all(np.diff(mean) > 0)  # more risk aversion: less SD, more cost
