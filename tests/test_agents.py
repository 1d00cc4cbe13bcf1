"""Agents: Double DQN's target, the registry, training, saving/loading, callbacks, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.type_aliases import ReplayBufferSamples

import sb3_exec
from sb3_exec import agents, evaluate, make_config
from sb3_exec.agents import DoubleDQN
from sb3_exec.agents.ddqn import double_q_target, dqn_target
from sb3_exec.env import ExecutionEnv
from sb3_exec.train import load, train
from sb3_exec.wrappers import make_env


class _Fixed(th.nn.Module):
    """A 'network' returning fixed Q-values per next observation (row index in obs[:, 0])."""

    def __init__(self, table):
        super().__init__()
        self.table = th.tensor(table, dtype=th.float32)

    def forward(self, obs):
        return self.table[obs[:, 0].long()]


def _batch():
    obs = th.tensor([[0.0], [1.0]])
    return ReplayBufferSamples(
        observations=obs,
        actions=th.zeros(2, 1, dtype=th.long),
        next_observations=obs,
        dones=th.tensor([[0.0], [1.0]]),
        rewards=th.tensor([[1.0], [2.0]]),
    )


def test_double_q_target_formula_and_difference_from_dqn():
    online = _Fixed([[1.0, 5.0, 0.0], [0.0, 0.0, 9.0]])  # picks action 1 in row 0
    target = _Fixed([[3.0, 2.0, 10.0], [4.0, 4.0, 4.0]])
    data, gamma = _batch(), 0.5
    # row 0: r + gamma * Q_target(s', argmax Q_online) = 1 + 0.5 * 2; row 1 is terminal
    np.testing.assert_allclose(double_q_target(online, target, data, gamma).numpy().ravel(), [2.0, 2.0])
    # DQN takes the max of the target net instead: 1 + 0.5 * 10
    np.testing.assert_allclose(dqn_target(target, data, gamma).numpy().ravel(), [6.0, 2.0])


def test_ddqn_is_a_dqn_that_learns_saves_and_loads(tmp_path):
    model = agents.make(
        "ddqn", ExecutionEnv("ac2000", reward="schedule"), seed=0, learning_starts=100, target_update_interval=100
    )
    assert isinstance(model, DoubleDQN) and isinstance(model, DQN)
    before = [p.detach().clone() for p in model.q_net.parameters()]
    model.learn(600)
    assert any(not th.equal(a, b) for a, b in zip(before, model.q_net.parameters(), strict=True))
    model.save(tmp_path / "m")
    loaded = DoubleDQN.load(tmp_path / "m")
    obs = np.random.default_rng(0).uniform(0, 1, size=(32, 6)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize("name", sorted(agents.AGENTS))
def test_every_agent_trains_briefly_and_evaluates(name):
    spec = agents.AGENTS[name]
    small = {"learning_starts": 50} if "dqn" in name else {}
    if name.startswith("ppo"):
        small = {"n_steps": 32, "batch_size": 64}
    preset = "liquidity" if spec.action_mode == "residual" else "seed"  # the MPC needs additive impact
    model = agents.make(name, preset=preset, seed=1, **small)
    model.learn(300)
    ev = evaluate({name: model, "twap": "twap"}, {"preset": preset}, seeds=range(20))  # its own interface
    mine = ev.episodes[ev.episodes.policy == name]
    assert len(mine) == 20 and mine.objective_bps.notna().all()
    assert mine.completion.between(0.0, 1.0).all()
    # every share pays at least the smallest half-spread of the episodes: a cost, never a gain
    assert (mine.schedule_cost_bps > 0.5).all()


DISCRETE_MODES = ("participation", "twap_multiple", "fraction_grid")
BOX_MODES = ("continuous", "fraction", "residual")


@pytest.mark.parametrize("name", sorted(agents.AGENTS))
def test_each_agent_on_each_action_mode_it_supports(name):
    """Every registered agent trains briefly on every action mode of its kind (discrete grids for
    the DQN family, A2C and PPO; boxes for the continuous PPOs), dark venue included, and its
    deterministic policy evaluates on the same episodes as TWAP."""
    continuous = agents.AGENTS[name].action_mode in BOX_MODES
    small = {"learning_starts": 50} if "dqn" in name else {"n_steps": 32}
    if name.startswith("ppo"):
        small["batch_size"] = 32
    for mode in BOX_MODES if continuous else DISCRETE_MODES:
        for extra in ({}, {"dark_share": 0.1}):
            kw = {"preset": "liquidity", "action_mode": mode, "T": 10, **extra}
            env = make_env(**kw)
            model = agents.make(name, env, seed=0, preset="liquidity", **small)
            model.learn(120)
            ev = evaluate({"m": model, "twap": "twap"}, kw, seeds=range(10))
            assert ev.episodes.objective_bps.notna().all(), (mode, extra)


def test_any_other_sb3_algorithm_works_on_the_env_unchanged():
    from stable_baselines3 import SAC, TD3

    for algo in (SAC, TD3):
        env = ExecutionEnv("ac2000", action_mode="fraction")
        model = algo("MlpPolicy", env, learning_starts=20, seed=0)
        model.learn(60)
        ev = evaluate({"m": model, "twap": "twap"}, {"preset": "ac2000", "action_mode": "fraction"}, seeds=range(10))
        assert ev.episodes.schedule_objective_bps.notna().all()


def test_make_reads_the_preset_of_the_env():
    """``make(name, env)`` uses the YAML entry of the env's preset (ppo_res is tuned on liquidity)."""
    tuned = agents.hyperparams("ppo_res", "liquidity")["learning_rate"]
    assert tuned != agents.hyperparams("ppo_res", "default")["learning_rate"]
    model = agents.make("ppo_res", agents.make_env("ppo_res", "liquidity", n_envs=2))
    assert model.learning_rate == tuned
    single = agents.make("ppo", make_env("liquidity", action_mode="fraction_grid"))
    assert single.learning_rate == agents.hyperparams("ppo", "liquidity")["learning_rate"]
    custom = agents.make("ppo_res", make_env(make_config("liquidity"), action_mode="residual"))
    assert custom.learning_rate == agents.hyperparams("ppo_res", "default")["learning_rate"]


def test_registry_errors():
    with pytest.raises(ValueError, match="agent"):
        agents.make("sac", preset="seed")
    with pytest.raises(ValueError, match="preset"):
        agents.hyperparams("dqn", "nowhere")
    with pytest.raises(ValueError, match="env"):
        agents.make("dqn")


def test_a_misspelled_hyperparameter_is_named_with_the_nearest_valid_one():
    with pytest.raises(ValueError, match=r"hyperparams: ppo: 'learning_rat' .* PPO; did you mean 'learning_rate'"):
        agents.make("ppo", preset="ac2000", learning_rat=0.001)
    with pytest.raises(ValueError, match=r"ddqn: 'n_timesteps' .*hyperparams/ddqn\.yml"):
        agents.check_hyperparams("ddqn", {"n_timesteps": 100})
    agents.check_hyperparams("qrdqn", {"learning_starts": 10, "policy_kwargs": {}})  # valid: no error


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args,names",
    [
        (["--timesteps", "0"], ["--timesteps", ">= 1", "got 0"]),
        (["--n-validation", "-3"], ["--n-validation", ">= 0", "got -3"]),
        (["--seed", "-1"], ["--seed", "got -1"]),
    ],
)
def test_train_cli_refuses_bad_values_in_one_line(args, names, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sb3_exec.train", "--agent", "ppo", *args, "--out", str(tmp_path / "o")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert all(n in lines[0] for n in names), lines[0]
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="n_validation"):
        train("ppo", "ac2000", timesteps=10, out=tmp_path / "p", n_validation=-3)


def test_yaml_defaults_and_preset_merge():
    hp = agents.hyperparams("ppo", "ac2000")
    assert hp["env_kwargs"]["reward"] == "schedule" and hp["gamma"] == 1.0
    assert agents.env_kwargs_for("ppo_cont", "seed")["action_mode"] == "continuous"
    # a preset's entry updates the default's nested dicts: liquidity's PPO keeps the default's
    # net_arch and reward and adds its interface and initial log-SD
    hp = agents.hyperparams("ppo", "liquidity")
    assert hp["policy_kwargs"] == {"net_arch": [64, 64], "log_std_init": -1.0}
    assert hp["env_kwargs"] == {"reward": "schedule", "action_mode": "pace_continuous", "pace_features": True}


@pytest.mark.parametrize(
    "name, mode", [("dqn", "pace_multiple"), ("ddqn", "pace_multiple"), ("ppo", "pace_continuous")]
)
def test_from_scratch_agents_on_liquidity_act_on_the_pace_interface(name, mode):
    """On liquidity the registered dqn, ddqn and ppo trade a multiple of x V_t / R_t and observe
    the pace features: no baseline's or planner's output in their action or observation (the
    interface has no base), and their models carry the interface into ``evaluate``."""
    from sb3_exec.actions import INTERFACES

    kw = agents.env_kwargs_for(name, "liquidity")
    assert kw["action_mode"] == mode and kw["pace_features"] is True and not INTERFACES[mode].needs_base
    small = {"learning_starts": 50} if "dqn" in name else {"n_steps": 32, "batch_size": 64}
    model = agents.make(name, preset="liquidity", seed=0, **small)
    assert model.observation_space.shape == (8,) and model.exec_env_kwargs["pace_features"] is True
    model.learn(200)
    ev = evaluate({name: model}, {"preset": "liquidity"}, seeds=range(5))  # the market only
    # the same as the model stepping the single env it was trained in, episode by episode (to
    # float32's last bits: the network's output for a batch and for one observation may differ there)
    env = gym.make(sb3_exec.ENV_ID, **model.exec_env_kwargs)
    for seed, objective in zip(ev.episodes.seed, ev.episodes.schedule_objective_bps, strict=True):
        obs, _ = env.reset(seed=int(seed))
        total, done = 0.0, False
        while not done:
            obs, reward, done, _, _ = env.step(model.predict(obs, deterministic=True)[0])
            total += reward
        assert -total == pytest.approx(objective, rel=1e-7)


def _weights(model):
    return th.cat([p.detach().flatten() for p in model.policy.parameters()])


@pytest.mark.parametrize("name", ["ddqn", "ppo"])
def test_same_seed_same_weights_and_evaluation(name, tmp_path):
    small = {"learning_starts": 100} if name == "ddqn" else {"n_steps": 64, "batch_size": 64}
    runs = [
        train(name, "ac2000", seed=3, timesteps=512, out=tmp_path / str(i), n_validation=20, tensorboard=False, **small)
        for i in range(2)
    ]
    assert th.equal(_weights(runs[0].model), _weights(runs[1].model))
    assert runs[0].meta["validation"] == runs[1].meta["validation"]
    other = train(name, "ac2000", seed=4, timesteps=512, out=tmp_path / "o", n_validation=0, tensorboard=False, **small)
    assert not th.equal(_weights(runs[0].model), _weights(other.model))


def test_train_saves_metadata_and_loads_back(tmp_path):
    res = train(
        "ddqn", "ac2000", seed=0, timesteps=300, out=tmp_path, n_validation=10, learning_starts=50, tensorboard=False
    )
    for f in ("model.zip", "meta.json", "best_model.zip"):
        assert (tmp_path / f).exists(), f
    assert res.meta["seed"] == 0 and res.meta["config"]["T"] == 5 and "torch" in res.meta["versions"]
    loaded = load(tmp_path)
    assert isinstance(loaded, DoubleDQN)
    obs = np.random.default_rng(1).uniform(0, 1, size=(16, 6)).astype(np.float32)
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], res.model.predict(obs, deterministic=True)[0]
    )


def test_tensorboard_events_contain_execution_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(
        "ppo", "ac2000", seed=0, timesteps=512, out=tmp_path, n_validation=10, eval_freq=256, n_steps=32, batch_size=64
    )
    run_dirs = [p for p in (tmp_path / "tb").iterdir() if p.is_dir()]
    assert len(run_dirs) == 1
    acc = EventAccumulator(str(run_dirs[0]), size_guidance={"images": 0}).Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in (
        "execution/shortfall_bps",
        "execution/objective_bps",
        "execution/completion",
        "execution/mean_participation",
        "execution/regret_bps",
        "eval/objective_bps",
        "eval/diff_twap_schedule_bps",
        "eval/regret_pct",
    ):
        assert tag in scalars, tag
    assert "eval/inventory" in " ".join(acc.Tags()["images"])
    regret = [e.value for e in acc.Scalars("execution/regret_bps")]
    assert min(regret) >= -1e-6  # no policy beats the analytic optimum's schedule objective


@pytest.mark.parametrize("name,small", [("ddqn", {"learning_starts": 50}), ("ppo", {"n_steps": 32, "batch_size": 64})])
def test_tensorboard_has_every_validation_point_at_its_step(name, small, tmp_path):
    """Each validation in meta.json is a TensorBoard point at the step it ran, the last one too
    (an off-policy run dumps its logs only at episode ends; PPO here validates twice a rollout)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = train(name, "ac2000", seed=0, timesteps=500, out=tmp_path, n_validation=10, **small)
    acc = EventAccumulator(str(next((tmp_path / "tb").iterdir()))).Reload()
    validation = res.meta["validation"]
    steps = [v["timesteps"] for v in validation]
    assert len(steps) == 5 and steps[-1] >= 500  # every fifth of the budget (PPO steps 8 envs)
    for tag in ("eval/objective_bps", "eval/schedule_objective_bps"):
        points = acc.Scalars(tag)
        assert [p.step for p in points] == steps, tag
        np.testing.assert_allclose([p.value for p in points], [v[tag[5:]] for v in validation], rtol=1e-6)


@pytest.mark.slow
def test_ppo_fraction_learns_the_almgren_chriss_schedule():
    """20k steps of PPO on the fraction action with the schedule reward: regret < 0.5% against
    the closed form. The untrained policy (about half of the inventory each slice, already
    front-loaded) sits at 0.7%, so learning is needed to pass; a wrong reward sign or a broken
    action mapping lands far above."""
    torch_threads = th.get_num_threads()
    th.set_num_threads(1)
    try:
        env_kwargs = {"preset": "ac2000", "action_mode": "fraction"}
        untrained = agents.make("ppo_frac", preset="ac2000", seed=0)
        before = evaluate({"m": untrained, "twap": "twap"}, env_kwargs, seeds=range(100)).summary(n_resamples=50)
        model = agents.make("ppo_frac", preset="ac2000", seed=0)
        model.learn(20_000)
        after = evaluate({"m": model, "twap": "twap"}, env_kwargs, seeds=range(100)).summary(n_resamples=50)
    finally:
        th.set_num_threads(torch_threads)
    assert before.loc["m", "regret_schedule_objective_bps_pct"] > 0.5
    assert after.loc["m", "regret_schedule_objective_bps_pct"] < 0.5
