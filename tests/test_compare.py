"""experiments.compare end to end: outputs, reproducibility, resumption, failures, Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments.compare import CompareConfig, compare, load_configs, main, parse_args

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(preset="ac2000", agents=["ppo"], seeds=2, timesteps=512, eval_episodes=50,
            validation_episodes=10, workers=1, hyperparams={"ppo": {"n_steps": 32, "batch_size": 64}})


def test_cli_end_to_end(tmp_path):
    cfg = {**TINY, "agents": ["ppo", "ddqn"], "workers": 2, "name": "tiny",
           "hyperparams": {"ppo": TINY["hyperparams"]["ppo"], "ddqn": {"learning_starts": 100}}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "experiments.compare", "--config", str(path),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in ("summary.csv", "episodes.csv", "report.md", "metadata.json", "config.yaml",
              "seeds.json", "learning_curves.png", "shortfall_distributions.png",
              "paired_differences.png", "inventory_paths.png", "efficient_frontier.png"):
        assert (out / f).stat().st_size > 0, f
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert set(summary.index) == {"twap", "pov", "vwap", "ac", "immediate", "adaptive", "oracle", "dp",
                                  "ppo", "ddqn"}
    for col in ("shortfall_bps", "objective_bps_lo", "objective_bps_sd", "diff_objective_bps_hi",
                "win_rate_objective_bps", "regret_schedule_objective_bps_pct",
                "iqm_schedule_objective_bps", "iqm_schedule_objective_bps_lo",
                "p_improve_twap_schedule_objective_bps", "runs", "failed_runs"):
        assert col in summary, col
    assert summary.loc["ppo", "runs"] == 2 and summary.loc["ppo", "failed_runs"] == 0
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == 8 * 50 + 2 * 2 * 50  # 8 baselines (dp too), 2 agents x 2 runs
    assert episodes.groupby("policy").seed.nunique().eq(50).all()  # the same 50 episodes
    meta = json.loads((out / "metadata.json").read_text())
    for key in ("config", "seeds", "versions", "git_commit", "wall_seconds", "resolved_env"):
        assert key in meta, key
    seeds = json.loads((out / "seeds.json").read_text())
    assert not (set(seeds["validation"]) & set(seeds["evaluation"]))
    report = (out / "report.md").read_text()
    assert "schedule objective" in report and "![" in report and "| ppo |" in report
    assert len(list((out / "runs").glob("*/tb/*/events.out.tfevents.*"))) == 4
    assert "summary_table" not in proc.stderr


def test_reproducible_and_resumes(tmp_path):
    a = compare(CompareConfig(**TINY, out=str(tmp_path / "a")))
    b = compare(CompareConfig(**TINY, out=str(tmp_path / "b")))
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    # interrupt: one run's result is lost; a rerun redoes that run only
    runs = sorted((b / "runs").iterdir())
    (runs[0] / "result.json").unlink()
    kept = (runs[1] / "result.json").stat().st_mtime_ns
    compare(CompareConfig(**TINY, out=str(b)))
    assert (runs[1] / "result.json").stat().st_mtime_ns == kept
    assert (runs[0] / "result.json").exists()
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    # an evaluation written by an older version (a column missing) is redone from the stored
    # model, without training again
    old = pd.read_csv(runs[1] / "episodes.csv").drop(columns="penalty_bps")
    old.to_csv(runs[1] / "episodes.csv", index=False)
    model_time = (runs[1] / "model.zip").stat().st_mtime_ns
    compare(CompareConfig(**TINY, out=str(b)))
    assert "penalty_bps" in pd.read_csv(runs[1] / "episodes.csv")
    assert (runs[1] / "model.zip").stat().st_mtime_ns == model_time
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    # other hyperparameters: the stored runs are not reused, they train again
    changed = {**TINY, "hyperparams": {"ppo": {"n_steps": 32, "batch_size": 32}}}
    compare(CompareConfig(**changed, out=str(b)))
    assert (runs[1] / "model.zip").stat().st_mtime_ns != model_time


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    cfg = CompareConfig(**{**TINY, "agents": ["ppo", "ddqn"], "seeds": 1,
                           "hyperparams": {"ppo": {"learning_rate": float("nan"), "n_steps": 32,
                                                   "batch_size": 64},
                                           "ddqn": {"learning_starts": 100}}},
                        out=str(tmp_path / "f"))
    out = compare(cfg)
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert summary.loc["ppo", "failed_runs"] == 1 and pd.isna(summary.loc["ppo", "objective_bps"])
    assert summary.loc["ddqn", "failed_runs"] == 0 and summary.loc["ddqn", "objective_bps"] > 0
    assert "Failed runs" in (out / "report.md").read_text()


def test_ray_backend(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sb3-exec[ray]'")
    local = compare(CompareConfig(**TINY, out=str(tmp_path / "local")))
    ray_out = compare(CompareConfig(**{**TINY, "workers": 2}, backend="ray", out=str(tmp_path / "ray")))
    assert (local / "summary.csv").read_bytes() == (ray_out / "summary.csv").read_bytes()


@pytest.mark.parametrize("field,value", [("preset", "x"), ("agents", ["sac"]), ("seeds", 0),
                                         ("eval_episodes", 1), ("baselines", ["pov"]),
                                         ("backend", "slurm"), ("env_overrides", {"T": 0}),
                                         ("timesteps", -5), ("hyperparams", {"dqn": {}})])
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field if field != "env_overrides" else "T"):
        CompareConfig(**{**TINY, field: value})


def test_baselines_follow_the_preset():
    assert "oracle" not in CompareConfig(**{**TINY, "preset": "seed"}).baselines
    assert "oracle" in CompareConfig(**{**TINY, "preset": "liquidity"}).baselines
    with pytest.raises(ValueError, match="baselines"):
        CompareConfig(**{**TINY, "preset": "seed", "baselines": ["twap", "oracle"]})


def test_liquidity_report_has_the_gap_closed(tmp_path):
    out = compare(CompareConfig(**{**TINY, "preset": "liquidity", "agents": [], "hyperparams": {},
                                   "eval_episodes": 200}, out=str(tmp_path / "l")))
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert 0 < summary.loc["adaptive", "gap_closed_pct"] < 100
    report = (out / "report.md").read_text()
    assert "gap closed" in report and "regret vs causal optimum" in report
    # the gap splits into what a causal policy can reach and the value of foresight
    assert "reachable by a causal policy" in report and "value of foresight" in report
    assert "The DP predicts its own mean" in report
    sched = summary["schedule_objective_bps"]
    assert sched["oracle"] < sched["dp"] < sched["adaptive"] < sched["twap"]
    np.testing.assert_allclose(summary.loc["adaptive", "regret_dp_bps"], sched["adaptive"] - sched["dp"], atol=1e-9)
    assert summary.loc["dp", "regret_dp_bps"] == 0 and summary.loc["adaptive", "regret_dp_bps_lo"] > 0
    # every policy is also paired with the adaptive MPC: TWAP costs more, the oracle less
    m = "vs_adaptive_schedule_objective_bps"
    assert summary.loc["adaptive", m] == 0
    assert summary.loc["twap", f"{m}_lo"] > 0 and summary.loc["oracle", f"{m}_hi"] < 0
    np.testing.assert_allclose(summary.loc["twap", m], summary.loc["twap", "schedule_objective_bps"]
                               - summary.loc["adaptive", "schedule_objective_bps"], atol=1e-9)


def test_shipped_configs_load_and_help_runs():
    for path in (ROOT / "experiments" / "configs").glob("*.yaml"):
        assert load_configs(path)
    quick = load_configs(ROOT / "experiments" / "configs" / "quick.yaml")
    assert [c.preset for c in quick] == ["ac2000", "liquidity"]  # the default coverage
    proc = subprocess.run([sys.executable, "-m", "experiments.compare", "--help"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert proc.returncode == 0 and "--backend" in proc.stdout and "--eval-episodes" in proc.stdout


def test_baselines_only_comparison(tmp_path):
    out = compare(CompareConfig(**{**TINY, "agents": [], "hyperparams": {}, "eval_episodes": 300},
                                out=str(tmp_path / "b")))
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert list(summary.index) == ["twap", "pov", "vwap", "ac", "immediate", "adaptive", "oracle", "dp"]
    assert summary.loc["ac", "regret_schedule_objective_bps_bps"] == pytest.approx(0, abs=1e-9)


def test_multi_part_config_runs_each_part_and_indexes_them(tmp_path):
    shared = {k: v for k, v in TINY.items() if k not in ("preset", "agents", "hyperparams")}
    parts = [{"name": "a", "preset": "ac2000", "agents": ["ppo"], "hyperparams": TINY["hyperparams"]},
             {"name": "liq", "preset": "liquidity", "agents": [], "eval_episodes": 20}]
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump({"name": "multi", **shared, "parts": parts}))
    cfgs = load_configs(path, out=str(tmp_path / "m"))
    assert [(c.preset, c.eval_episodes, c.out_dir) for c in cfgs] == [
        ("ac2000", 50, tmp_path / "m" / "a"), ("liquidity", 20, tmp_path / "m" / "liq")]
    # selecting: by part, by preset (its part), and a preset no part has (the shared settings)
    assert [c.preset for c in load_configs(path, ["liq"])] == ["liquidity"]
    assert load_configs(path, preset="liquidity")[0].eval_episodes == 20
    assert load_configs(path, preset="seed")[0].agents == CompareConfig().agents
    assert all(c.seeds == 5 for c in load_configs(path, seeds=5))
    with pytest.raises(ValueError, match="part"):
        load_configs(path, ["nope"])
    with pytest.raises(ValueError, match="parts"):
        CompareConfig.from_yaml(path)
    with pytest.raises(SystemExit):  # both name the folder: refused, not silently one of them
        parse_args(["--config", str(path), "--out", str(tmp_path / "m"), "--name", "other"])
    main(["--config", str(path), "--out", str(tmp_path / "m")])
    index = (tmp_path / "m" / "README.md").read_text()
    assert "[a](a/report.md)" in index and "[liq](liq/report.md)" in index and "oracle" in index
    assert pd.read_csv(tmp_path / "m" / "liq" / "summary.csv").policy.tolist()[-2:] == ["oracle", "dp"]
