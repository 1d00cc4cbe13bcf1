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
    assert "| quadrature 9 -> 13 |" in text and "converged" in text and "NOT converged" not in text
    assert "Largest move" in capsys.readouterr().out


def test_refinements_are_those_the_preset_uses():
    lob = dp.default_grid(make_config("lob"))
    names = list(dp_grid.refinements(make_config("lob"), lob, together=True))
    assert names[:4] == ["inventory 41 -> 81", "volume 13 -> 25", "spread 7 -> 13", "signal 9 -> 17"]
    assert "dark_orders 5 multiples -> 10 multiples" in names and names[-1] == "all of them"
    ac = dp_grid.refinements(make_config("ac60"), dp.default_grid(make_config("ac60")))
    assert list(ac) == ["inventory 201 -> 401"]  # no moving state: nothing else to refine
    with pytest.raises(ValueError, match="fields: 'span'"):
        dp_grid.refinements(make_config("lob"), lob, ["span"])


def test_an_unsupported_preset_is_refused_naming_the_reason(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        dp_grid.main(["--preset", "seed", "--out", str(tmp_path)])
    assert e.value.code == 2 and "temp_impact" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
