"""experiments.tune: two tiny trials end to end, resumption from SQLite, YAML that make() accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sb3_exec import agents

optuna = pytest.importorskip("optuna", reason="Optuna is an optional extra: pip install -e '.[tune]'")
from experiments.tune import default_trial, save_into_hyperparams, tune  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_two_trials_resume_and_yaml(tmp_path):
    out = tmp_path / "study"
    entry = tune("ppo_frac", "ac2000", trials=2, timesteps=256, n_validation=10, out=out)
    assert (out / "study.db").exists() and (out / "best.yml").exists()
    best = yaml.safe_load((out / "best.yml").read_text())
    assert best == entry and set(best) == {"ac2000"}
    model = agents.make("ppo_frac", preset="ac2000", seed=0, **best["ac2000"])
    assert model.learning_rate == best["ac2000"]["learning_rate"]
    # resume: the study keeps its trials and adds one
    tune("ppo_frac", "ac2000", trials=1, timesteps=256, n_validation=10, out=out)
    study = optuna.load_study(study_name="ppo_frac_ac2000", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.trials) == 3
    # the first trial is the YAML defaults, measured on the same validation episodes
    assert study.trials[0].params == default_trial("ppo_frac", "ac2000")
    assert study.trials[0].params["learning_rate"] == agents.hyperparams("ppo_frac", "ac2000")["learning_rate"]
    assert study.trials[1].params != study.trials[0].params
    # the validation score is the schedule objective: finite, and above the AC optimum
    assert all(t.value > 254.86 for t in study.trials if t.value is not None)


def test_save_writes_into_the_agent_yaml(tmp_path, monkeypatch):
    folder = tmp_path / "hp"
    shutil.copytree(agents.HYPERPARAMS_DIR, folder)
    monkeypatch.setattr(agents, "HYPERPARAMS_DIR", folder)
    agents._load_yaml.cache_clear()
    try:
        save_into_hyperparams("dqn", {"ac60": {"learning_rate": 0.002, "batch_size": 32}})
        hp = agents.hyperparams("dqn", "ac60")
        assert hp["learning_rate"] == 0.002 and hp["batch_size"] == 32
        assert hp["gamma"] == 1.0  # the default entry still underlies the preset's
    finally:
        agents._load_yaml.cache_clear()


def test_cli_help_and_bad_input():
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.tune", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0 and "--trials" in proc.stdout and "optuna-dashboard" in proc.stdout
    with pytest.raises(ValueError, match="trials"):
        tune("dqn", "ac2000", trials=0)
    with pytest.raises(ValueError, match="timesteps must be an integer >= 1, got 0"):
        tune("dqn", "ac2000", trials=1, timesteps=0)  # not the YAML's budget in disguise
    base = [sys.executable, "-m", "experiments.tune", "--agent", "dqn", "--preset", "ac2000"]
    for args, names in (
        (["--trials", "0"], ("--trials", "got 0")),
        (["--timesteps", "0"], ("--timesteps", "got 0")),
        (["--n-validation", "0"], ("--n-validation", "got 0")),
    ):
        proc = subprocess.run(base + args, cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
        assert all(n in lines[0] for n in names), lines[0]
