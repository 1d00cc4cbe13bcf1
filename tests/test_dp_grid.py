"""The DP's grid-convergence command (``experiments.dp_grid``)."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments import dp_grid
from sb3_exec import dp, make_config


def test_the_command_compares_refinements_on_paired_episodes(tmp_path, capsys):
    dp_grid.main(["--preset", "liquidity", "--episodes", "300", "--fields", "quadrature", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "liquidity.csv")
    assert df.grid.tolist() == ["default", "quadrature 9 -> 13"]
    assert df.loc[0, "diff_bps"] == 0 and abs(df.loc[1, "diff_bps"]) < 0.01  # converged on liquidity
    assert df.loc[1, "diff_lo"] <= df.loc[1, "diff_bps"] <= df.loc[1, "diff_hi"]
    assert 12 < df.loc[0, "simulated_bps"] < 17 and df.loc[0, "volume"] == 21
    text = (tmp_path / "liquidity.md").read_text()
    assert "| quadrature 9 -> 13 |" in text and ": converged." in text
    assert "Largest move" in capsys.readouterr().out


def test_refinements_are_those_the_preset_uses():
    lob = dp.default_grid(make_config("lob"))
    names = list(dp_grid.refinements(make_config("lob"), lob, together=True))
    assert names[:4] == ["inventory 41 -> 81", "volume 13 -> 25", "spread 7 -> 13", "signal 9 -> 17"]
    assert "dark_orders 5 multiples -> 10 multiples" in names and names[-1] == "all of them"
    assert "bisection 12 -> 24" in names
    ac = dp_grid.refinements(make_config("ac60"), dp.default_grid(make_config("ac60")))
    assert list(ac) == ["inventory 201 -> 401", "bisection 50 -> 100"]  # no moving state
    with pytest.raises(ValueError, match="fields: 'span' is not refined"):
        dp_grid.refinements(make_config("lob"), lob, ["span"])
    with pytest.raises(ValueError, match="fields: 'dark' does not apply"):
        dp_grid.refinements(make_config("liquidity"), dp.default_grid(make_config("liquidity")), ["dark"])


def test_the_verdict_asks_the_whole_ci_to_lie_within_the_tolerance():
    def frame(*diffs):
        rows = [{"diff_bps": 0.0, "diff_lo": 0.0, "diff_hi": 0.0}]
        rows += [{"diff_bps": m, "diff_lo": lo, "diff_hi": hi} for m, lo, hi in diffs]
        return pd.DataFrame(rows)

    assert dp_grid.verdict(frame((0.01, -0.02, 0.04)), 0.05) == (0.01, "converged")
    assert dp_grid.verdict(frame((0.01, -0.02, 0.07)), 0.05)[1] == "inconclusive"  # too few episodes
    assert dp_grid.verdict(frame((0.01, 0.0, 0.02), (-0.06, -0.08, -0.04)), 0.05) == (0.06, "NOT converged")
    assert dp_grid.verdict(frame(), 0.05)[1] == "nothing refined"
    with pytest.raises(ValueError, match="not finite"):
        dp_grid.verdict(frame((float("nan"), float("nan"), float("nan"))), 0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "seed"], "temp_impact"),
        (["--preset", "liquidity", "--fields", "dark"], "fields: 'dark' does not apply"),
        (["--episodes", "1"], "episodes must be an integer >= 2"),
        (["--tolerance", "0"], "tolerance must be a positive number"),
    ],
)
def test_bad_input_is_refused_before_anything_is_solved(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        dp_grid.main([*args, "--out", str(tmp_path)])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
