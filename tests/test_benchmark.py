"""The benchmark command runs and reports every figure (speed itself is not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments.notebook_reference import NotebookExecEnv

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick_json():
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--quick", "--json", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    assert res["notebook_steps_per_s"] > 0 and res["single_env_steps_per_s"] > 0
    assert set(res["vec_env_steps_per_s"]) == {"1", "64", "1024", "4096"}
    assert res["evaluator"]["episodes"] == 1000 and res["evaluator"]["seconds"] > 0
    for agent in ("ppo", "dqn"):
        assert 0 < res["training_env_share"][agent]["share"] < 1
    ratios = res["ratios"]
    assert set(ratios) == {
        "single_env",
        "single_env_default_wrappers",
        "vec_env_B1",
        "vec_env_B64",
        "vec_env_B1024",
        "vec_env_B4096",
        "evaluator",
    }
    assert ratios["single_env"] == res["single_env_steps_per_s"] / res["notebook_steps_per_s"]
    assert (
        ratios["single_env_default_wrappers"]
        == res["single_env_default_wrappers_steps_per_s"] / res["notebook_steps_per_s"]
    )


def test_notebook_reference_is_the_notebook_model():
    """Action 0 to the deadline: the notebook's forced liquidation at 5x temporary impact."""
    env = NotebookExecEnv(seed=0)
    env.sigma, env.noise_sd = 0.0, 0.0
    env.reset()
    total = 0.0
    for _ in range(40):
        _, r, done, _ = env.step(0)
        total += r
    assert done
    vol = env.market_vol[-1]
    cost = (0.05 + 5 * 5e-5 * 1e5 / vol * 100.0) * 1e5
    np.testing.assert_allclose(-total * 1e7, cost, rtol=1e-9)
