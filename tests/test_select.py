"""Which checkpoint an agent is evaluated as: its YAML entry's ``select`` (the final model, or the
best validation checkpoint as rl-baselines3-zoo's ``best_model.zip``) and ``eval_freq``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3 import PPO

from conftest import TINY
from experiments.compare import CompareConfig, compare, preflight
from experiments.runs import RunSpec
from sb3_exec import agents
from sb3_exec.evaluation import evaluate
from sb3_exec.policies import load_run
from sb3_exec.seeding import evaluation_seeds, validation_seeds
from sb3_exec.train import train

SMALL = TINY["hyperparams"]["ppo"]


@pytest.fixture
def ppo_entry(monkeypatch):
    """Give ppo's YAML entry extra keys (``select``, ``eval_freq``) for the test."""
    real = agents.hyperparams

    def patch(**extra):
        monkeypatch.setattr(agents, "hyperparams", lambda name, preset="default": {**real(name, preset), **extra})

    return patch


def _weights(model):
    return th.cat([p.detach().flatten() for p in model.policy.parameters()])


def test_select_best_evaluates_the_best_validation_checkpoint(tmp_path, ppo_entry):
    ppo_entry(select="best", eval_freq=128)
    res = train("ppo", "ac2000", seed=0, timesteps=512, out=tmp_path, n_validation=10, tensorboard=False, **SMALL)
    scores = [h["schedule_objective_bps"] for h in res.meta["validation"]]
    assert [h["timesteps"] for h in res.meta["validation"]] == [128, 256, 384, 512]  # the YAML's eval_freq
    assert res.meta["selected"] == "best_model.zip" and res.selected == tmp_path / "best_model.zip"
    assert int(np.argmin(scores)) != len(scores) - 1  # this seed's best is not its last: the case that matters
    policy = load_run(tmp_path)  # the folder loads the selected checkpoint
    assert th.equal(_weights(policy.model), _weights(PPO.load(tmp_path / "best_model.zip")))
    assert not th.equal(_weights(policy.model), _weights(res.model))
    # and it is the model that scored best: evaluated again on the validation episodes
    ev = evaluate({"agent": tmp_path}, {"preset": "ac2000"}, validation_seeds(10, master=0))
    assert ev.episodes.schedule_objective_bps.mean() == pytest.approx(min(scores), rel=1e-12)


def test_select_final_is_the_default_and_loads_the_final_model(tmp_path):
    res = train("ppo", "ac2000", seed=0, timesteps=256, out=tmp_path, n_validation=10, tensorboard=False, **SMALL)
    assert res.meta["selected"] == "model.zip" and len(res.meta["validation"]) == 5  # a fifth of the budget
    assert th.equal(_weights(load_run(tmp_path).model), _weights(res.model))


def test_a_budget_below_eval_freq_still_validates_once(tmp_path, ppo_entry):
    ppo_entry(select="best", eval_freq=10_000)
    res = train("ppo", "ac2000", seed=0, timesteps=256, out=tmp_path, n_validation=5, tensorboard=False, **SMALL)
    assert [h["timesteps"] for h in res.meta["validation"]] == [256] and (tmp_path / "best_model.zip").exists()


def test_bad_select_is_refused_and_best_without_validation_keeps_the_final_model(tmp_path, ppo_entry):
    ppo_entry(select="last")
    with pytest.raises(ValueError, match="select: 'last' is not a checkpoint"):
        train("ppo", "ac2000", timesteps=64, out=tmp_path, n_validation=5, tensorboard=False, **SMALL)
    ppo_entry(select="best")
    with pytest.warns(UserWarning, match="n_validation=0 runs no validation: the final model is selected"):
        res = train("ppo", "ac2000", timesteps=64, out=tmp_path, n_validation=0, tensorboard=False, **SMALL)
    assert res.meta["selected"] == "model.zip" and not (tmp_path / "best_model.zip").exists()
    ppo_entry(eval_freq=0.5)
    with pytest.raises(ValueError, match="eval_freq must be an integer >= 1"):
        train("ppo", "ac2000", timesteps=64, out=tmp_path, n_validation=5, tensorboard=False, **SMALL)
    cfg = CompareConfig(preset="ac2000", agents=["ppo"], seeds=1, validation_episodes=0, out=str(tmp_path / "c"))
    ppo_entry(select="best")
    with pytest.raises(ValueError, match="validation_episodes: 'ppo' is evaluated as its best"):
        preflight([cfg])


def test_select_changes_the_evaluation_not_the_training(ppo_entry):
    """A stored run is evaluated again, not trained again, when only ``select`` changes; with
    ``final`` the evaluation key is the one stored runs already carry."""
    spec = RunSpec("ppo", 1, "ac2000", {}, 256, {}, [7], [11, 12], "unused")
    final = (spec.fingerprint, spec.eval_key)
    assert spec.select == "final"
    ppo_entry(select="best")
    assert spec.select == "best"
    assert spec.fingerprint == final[0] and spec.eval_key != final[1]
    ppo_entry(select="best", eval_freq=64)  # other checkpoints: trained again
    assert spec.fingerprint != final[0]
    assert json.loads(spec.fingerprint)["params"]["eval_freq"] == 64


def test_a_comparison_evaluates_the_selected_checkpoint_and_says_so(tmp_path, ppo_entry):
    """compare evaluates the checkpoint the YAML selects and its report says which; switching
    ``select`` back to ``final`` evaluates the stored run again without training it again."""
    ppo_entry(select="best", eval_freq=128)
    cfg = CompareConfig(**{**TINY, "seeds": 1, "eval_episodes": 30}, out=str(tmp_path / "c"))
    out = compare(cfg)
    (run,) = (out / "runs").iterdir()
    seeds = evaluation_seeds(30, master=0)

    def evaluated_as(checkpoint):
        ev = evaluate({"ppo": load_run(run / checkpoint)}, {"preset": "ac2000"}, seeds)
        return ev.episodes.schedule_objective_bps.to_numpy()

    stored = pd.read_csv(run / "episodes.csv").schedule_objective_bps.to_numpy()
    np.testing.assert_array_equal(stored, evaluated_as("best_model.zip"))
    assert "| ppo | from scratch | best |" in (out / "report.md").read_text()
    trained_at = (run / "model.zip").stat().st_mtime_ns
    ppo_entry(eval_freq=128)  # select final: the same training, another evaluation
    compare(cfg)
    assert (run / "model.zip").stat().st_mtime_ns == trained_at
    stored = pd.read_csv(run / "episodes.csv").schedule_objective_bps.to_numpy()
    np.testing.assert_array_equal(stored, evaluated_as("model.zip"))
    assert not np.array_equal(stored, evaluated_as("best_model.zip"))  # this run's best is not its last
    assert "| ppo | from scratch | final |" in (out / "report.md").read_text()
