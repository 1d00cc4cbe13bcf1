"""Agents defined by class or factory (``sb3_exec.agents.custom``): a wrong entry fails before
anything trains, in one line naming the entry and the field; a definition trains, saves, reloads
and is seeded like a registered agent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3 import DQN

from experiments.compare import CompareConfig, preflight
from sb3_exec import evaluate, load_run
from sb3_exec.actions import BOX_MODES
from sb3_exec.agents.custom import AgentDef, accepted_arguments, parse
from sb3_exec.config import ACTION_MODES
from sb3_exec.seeding import evaluation_seeds
from sb3_exec.train import train

ROOT = Path(__file__).resolve().parents[1]
TQC = {"name": "tqc", "algo": "sb3_contrib:TQC", "action_mode": "fraction"}
FACTORY = "experiments.examples.my_agents:make"
LSTM = {
    "name": "lstm",
    "algo": "sb3_contrib:RecurrentPPO",
    "action_mode": "fraction",
    "n_envs": 4,
    "hyperparams": {
        "policy": "MlpLstmPolicy",
        "n_steps": 16,
        "batch_size": 32,
        "policy_kwargs": {"lstm_hidden_size": 16, "net_arch": [16]},
    },
}
TINY = {"preset": "ac2000", "seeds": 1, "timesteps": 200, "eval_episodes": 10, "validation_episodes": 0, "workers": 1}


class MyDQN(DQN):
    """One's own SB3 subclass that passes its arguments on (``**kwargs``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


def strict_factory(env: Any, seed: int, net_arch: tuple[int, ...] = (32,)) -> DQN:
    """A factory without ``**kwargs``: its hyperparameters are its named arguments."""
    return DQN("MlpPolicy", env, seed=seed, policy_kwargs={"net_arch": list(net_arch)})


class NotAModel:
    def learn(self, *args: Any) -> None: ...

    def predict(self, *args: Any) -> None: ...


def returns_no_model(env: Any, seed: int) -> NotAModel:
    return NotAModel()


def fails(env: Any, seed: int) -> None:
    raise RuntimeError("no GPU here")


HERE = "test_custom_agents"  # pytest puts tests/ on sys.path: this module is importable


@pytest.mark.parametrize(
    "entry,names",
    [
        (
            {**TQC, "algo": "sb3_contrib:TQX"},
            ["agents[1] 'tqc': algo:", "cannot import 'sb3_contrib:TQX'", "did you mean 'TQC'?"],
        ),
        ({**TQC, "algo": "no_such_pkg.agents:Algo"}, ["agents[1] 'tqc': algo:", "No module named 'no_such_pkg'"]),
        ({**TQC, "algo": FACTORY}, ["algo:", "not an algorithm class", "factory"]),
        ({**TQC, "factory": FACTORY}, ["agents[1] 'tqc': algo:", "not both"]),
        ({"name": "tqc", "action_mode": "fraction"}, ["agents[1] 'tqc': algo:", "missing"]),
        ({**TQC, "hyperparms": {}}, ["agents[1] 'tqc': hyperparms:", "not a field", "did you mean 'hyperparams'?"]),
        ({**TQC, "action_mode": "fractoin"}, ["agents[1] 'tqc': action_mode:", "did you mean 'fraction'?"]),
        ({"name": "tqc", "algo": "sb3_contrib:TQC"}, ["action_mode:", "missing", "'twap_multiple'"]),
        (
            {**TQC, "hyperparams": {"learning_rat": 1e-3}},
            [
                "agents[1] 'tqc': hyperparams:",
                "'learning_rat' is not an argument of TQC",
                "did you mean 'learning_rate'?",
            ],
        ),
        ({**TQC, "hyperparams": {"n_timesteps": 10}}, ["hyperparams:", "'n_timesteps'", "field of the entry"]),
        ({**TQC, "hyperparams": {"seed": 1}}, ["agents[1] 'tqc': hyperparams:", "'seed' is set by each run"]),
        (
            {**TQC, "algo": f"{HERE}:MyDQN", "action_mode": "twap_multiple", "hyperparams": {"buffer_sise": 10}},
            ["hyperparams:", "'buffer_sise' is not an argument of MyDQN", "did you mean 'buffer_size'?"],
        ),
        (
            {
                "name": "f",
                "factory": f"{HERE}:strict_factory",
                "action_mode": "twap_multiple",
                "hyperparams": {"net_arc": [8]},
            },
            ["agents[1] 'f': hyperparams:", "'net_arc'", "did you mean 'net_arch'?"],
        ),
        ({**TQC, "name": "ppo"}, ["agents[1] 'ppo': name:", "registered agent"]),
        ({**TQC, "name": "twap"}, ["agents[1] 'twap': name:", "baseline"]),
        ({**TQC, "name": "my agent"}, ["agents[1]: name:", "'my agent' is not a name"]),
        ({**TQC, "n_envs": 0}, ["agents[1] 'tqc': n_envs:", ">= 1, got 0"]),
        ({**TQC, "env_kwargs": {"reward": "pnl"}}, ["agents[1] 'tqc': env_kwargs:", "reward", "'pnl'"]),
        ({**TQC, "env_kwargs": {"action_mode": "fraction"}}, ["env_kwargs:", "the entry's own field"]),
        (3, ["agents[1]:", "a registered name or a mapping"]),
    ],
)
def test_a_bad_entry_is_refused_in_one_line_naming_it(entry, names):
    with pytest.raises(ValueError) as exc:
        CompareConfig(**TINY, agents=["ppo", entry])
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in names), message


def test_names_repeated_or_unknown_are_refused():
    with pytest.raises(ValueError, match=r"agents\[2\] 'tqc': name: 'tqc' is defined twice \(agents\[0\] 'tqc' too\)"):
        CompareConfig(**TINY, agents=[TQC, "ppo", TQC])
    with pytest.raises(ValueError, match=r"agents: unknown agent 'tqcc'.*defined here: \['tqc'\]"):
        CompareConfig(**TINY, agents=[TQC, "tqcc"])
    with pytest.raises(ValueError, match=r"agents: listed twice: \['ppo'\]"):
        CompareConfig(**TINY, agents=["ppo", "ppo"])
    with pytest.raises(ValueError, match=r"hyperparams: entries for agents not in the comparison: \['lstm'\]"):
        CompareConfig(**TINY, agents=[TQC], hyperparams={"lstm": {}})


@pytest.mark.parametrize(
    "entry,names",
    [
        (
            {"name": "dqn_box", "algo": "stable_baselines3:DQN", "action_mode": "fraction"},
            [
                "agents[0] 'dqn_box': action_mode:",
                "cannot act in Box",
                "supports Discrete spaces only",
                f"discrete interfaces are {[m for m in ACTION_MODES if m not in BOX_MODES]}",
            ],
        ),
        (
            {**TQC, "action_mode": "twap_multiple"},
            [
                "agents[0] 'tqc': action_mode:",
                "cannot act in Discrete(12)",
                "'twap_multiple' on preset 'ac2000'",
                "supports Box spaces only",
                f"box interfaces are {list(BOX_MODES)}",
            ],
        ),
        (
            {"name": "odd", "factory": f"{HERE}:returns_no_model", "action_mode": "fraction"},
            ["agents[0] 'odd': factory:", "built a NotAModel, which has no save, load"],
        ),
        (
            {"name": "gpu", "factory": f"{HERE}:fails", "action_mode": "fraction"},
            ["agents[0] 'gpu': factory:", "failed: RuntimeError: no GPU here"],
        ),
        (
            {**TQC, "hyperparams": {"learning_rate": "fast"}},
            ["agents[0] 'tqc': hyperparams:", "building sb3_contrib:TQC", "learning rate schedule must be a float"],
        ),
    ],
)
def test_an_entry_that_cannot_be_built_fails_in_the_preflight(entry, names):
    cfg = CompareConfig(**TINY, agents=[entry], name="c")
    with pytest.raises(ValueError) as exc:
        preflight([cfg])
    message = str(exc.value)
    assert message.startswith("c: ") and "\n" not in message and all(n in message for n in names), message


def test_the_cli_refuses_a_bad_entry_before_anything_runs(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **TINY,
                "agents": ["ppo", {"name": "dqn_box", "algo": "stable_baselines3:DQN", "action_mode": "continuous"}],
            }
        )
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.compare", "--config", str(path), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "agents[1] 'dqn_box': action_mode:" in lines[0] and "Box" in lines[0], lines[0]
    assert not out.exists()


def test_a_subclass_passing_kwargs_on_takes_its_bases_arguments():
    assert {"buffer_size", "learning_rate", "policy", "seed"} <= accepted_arguments(MyDQN)
    assert accepted_arguments(strict_factory, skip=2) == {"net_arch"}
    assert accepted_arguments(lambda env, seed, **kw: None, skip=2) is None  # anything goes


def _weights(model: Any) -> np.ndarray:
    return th.cat([p.detach().flatten() for p in model.policy.parameters()]).numpy()


def test_a_defined_recurrent_ppo_trains_validates_saves_and_reloads(tmp_path):
    th.set_num_threads(1)
    defn = parse(LSTM, "agents[0]", preset="liquidity")
    res = train(defn, "liquidity", seed=3, timesteps=256, out=tmp_path / "a", n_validation=5, eval_freq=128)
    meta = res.meta
    assert meta["agent"] == "lstm" and meta["algo"].endswith(":RecurrentPPO") and meta["timesteps"] == 256
    assert meta["definition"] == defn.as_dict() and meta["env_kwargs"]["action_mode"] == "fraction"
    assert [v["timesteps"] for v in meta["validation"]] == [128, 256]  # the seeded validation ran
    assert list((tmp_path / "a" / "tb").glob("lstm_liquidity_s3_1/events.out.tfevents.*"))
    seeds = evaluation_seeds(8)
    here = evaluate({"m": res.model}, {"preset": "liquidity"}, seeds).episodes.schedule_objective_bps
    loaded = load_run(tmp_path / "a")  # the run folder reloads through meta.json's class
    assert type(loaded.model).__name__ == "RecurrentPPO" and loaded.options["action_mode"] == "fraction"
    again = evaluate({"m": loaded}, {"preset": "liquidity"}, seeds).episodes.schedule_objective_bps
    np.testing.assert_array_equal(here, again)
    # seeded: the same seed gives the same weights, another seed others
    same = train(defn, "liquidity", seed=3, timesteps=256, out=tmp_path / "b", n_validation=0, tensorboard=False)
    np.testing.assert_array_equal(_weights(same.model), _weights(res.model))
    other = train(defn, "liquidity", seed=4, timesteps=256, out=tmp_path / "c", n_validation=0, tensorboard=False)
    assert not np.array_equal(_weights(other.model), _weights(res.model))


def test_a_factory_gets_the_env_and_seed_and_its_model_carries_the_interface(tmp_path):
    defn = AgentDef("mine", "twap_multiple", factory=FACTORY, hyperparams={"learning_starts": 50, "lr_end": 5e-4})
    res = train(defn, "ac2000", seed=1, timesteps=200, out=tmp_path / "m", n_validation=0, tensorboard=False)
    model = res.model
    assert type(model).__name__ == "DQN" and model.seed == 1 and model.learning_starts == 50
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.0) == pytest.approx(5e-4)
    assert model.exec_env_kwargs["action_mode"] == "twap_multiple" and model.exec_env_kwargs["preset"] == "ac2000"
    assert load_run(tmp_path / "m").options["action_mode"] == "twap_multiple"
