"""Models act through the interface they were trained in: mixed interfaces in one ``evaluate``,
from run folders and from memory; residual agents on any causal base train through ``agents.make``."""

from __future__ import annotations

import pandas as pd
import pytest
from stable_baselines3 import PPO

from sb3_exec import agents, evaluate, load_run, make_env
from sb3_exec.policies import ModelPolicy, env_options_of
from sb3_exec.seeding import evaluation_seeds
from sb3_exec.train import train

SEEDS = evaluation_seeds(40)


def _episodes(ev, name):
    return ev.episodes[ev.episodes.policy == name].drop(columns="policy").reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DQN run folder (12 TWAP multiples), a PPO (a continuous pace multiple, with the pace
    features: the registered ppo on liquidity) and a PPO residual on the MPC in memory, all on
    ``liquidity``."""
    out = tmp_path_factory.mktemp("runs")
    dqn_dir = out / "dqn_s0"
    train(
        "dqn",
        "liquidity",
        seed=0,
        timesteps=400,
        out=dqn_dir,
        n_validation=0,
        tensorboard=False,
        env_overrides={"action_mode": "twap_multiple", "pace_features": False},
        learning_starts=100,
    )
    ppo = agents.make("ppo", preset="liquidity", seed=0, n_steps=16, batch_size=64)
    ppo.learn(256)
    res = agents.make(
        "ppo_res", agents.make_env("ppo_res", "liquidity", seed=0, n_envs=8), seed=0, n_steps=16, batch_size=64
    )
    res.learn(256)
    return dqn_dir, ppo, res


def test_mixed_interfaces_in_one_call_equal_each_model_alone(trained):
    dqn_dir, ppo, res = trained
    assert ppo.action_space.shape == (1,) and load_run(dqn_dir).model.action_space.n == 12
    ev = evaluate(
        {"dqn": str(dqn_dir), "ppo": ppo, "ppo_res": res, "twap": "twap"}, {"preset": "liquidity"}, SEEDS
    )  # the market only: no action_mode anywhere
    assert set(ev.episodes.policy) == {"dqn", "ppo", "ppo_res", "twap"}
    alone = {
        "dqn": evaluate({"dqn": load_run(dqn_dir)}, {"preset": "liquidity", "action_mode": "twap_multiple"}, SEEDS),
        "ppo": evaluate(
            {"ppo": ppo}, {"preset": "liquidity", "action_mode": "pace_continuous", "pace_features": True}, SEEDS
        ),
        "ppo_res": evaluate({"ppo_res": res}, {"preset": "liquidity", "action_mode": "residual"}, SEEDS),
    }
    for name, ev_alone in alone.items():
        pd.testing.assert_frame_equal(_episodes(ev, name), _episodes(ev_alone, name))
    # the interfaces differ, so the policies do: not one model evaluated three times
    by = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    assert by["dqn"].ne(by["ppo"]).all() and by["ppo"].ne(by["ppo_res"]).all()


def test_the_interface_is_saved_with_the_model(trained, tmp_path):
    dqn_dir, ppo, res = trained
    assert res.exec_env_kwargs["action_mode"] == "residual" and res.exec_env_kwargs["preset"] == "liquidity"
    res.save(tmp_path / "res.zip")
    loaded = PPO.load(tmp_path / "res.zip", device="cpu")  # no env, no meta.json: the zip carries it
    assert env_options_of(loaded)["action_mode"] == "residual"
    a = evaluate({"m": loaded}, {"preset": "liquidity"}, SEEDS[:10])
    b = evaluate({"m": res}, {"preset": "liquidity"}, SEEDS[:10])
    pd.testing.assert_frame_equal(a.episodes, b.episodes)
    assert load_run(dqn_dir / "model.zip").options["action_mode"] == "twap_multiple"


def test_a_model_trained_elsewhere_names_its_interface():
    env = make_env("ac2000", action_mode="fraction")
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0)  # built without agents.make
    assert env_options_of(model)["action_mode"] == "fraction"  # read from its env
    model.learn(64)
    model.env = None  # as if loaded without an env: nothing to read the interface from
    with pytest.raises(ValueError, match="action_mode"):
        evaluate({"m": model}, {"preset": "ac2000"}, SEEDS[:5])  # the default twap_multiple grid
    ev = evaluate({"m": ModelPolicy(model, action_mode="fraction"), "twap": "twap"}, {"preset": "ac2000"}, SEEDS[:5])
    assert ev.episodes.schedule_objective_bps.notna().all()
    with pytest.raises(ValueError, match="twap_multipls"):
        ModelPolicy(model, action_mode="twap_multiple", twap_multipls=(0, 1))


def test_run_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="policy"):
        evaluate({"m": str(tmp_path / "nowhere")}, {"preset": "seed"}, [0])
    with pytest.raises(ValueError, match="run folder"):
        load_run(tmp_path)


@pytest.mark.parametrize("base, preset", [("adaptive", "liquidity"), ("twap", "seed")])
def test_a_residual_on_any_base_trains_through_agents_make(base, preset):
    """ppo_res on the MPC (liquidity) and on TWAP (the notebook's preset, which the MPC cannot
    solve): the model trains, carries its base, and at action 0 is its base."""
    env = agents.make_env("ppo_res", preset, seed=0, n_envs=4, residual_base=base)
    model = agents.make("ppo_res", env, seed=0, n_steps=16, batch_size=32)
    model.learn(128)
    assert model.exec_env_kwargs["residual_base"] == base and model.exec_env_kwargs["preset"] == preset
    obs = env.reset()
    assert obs.shape == (4, 7) and (obs[:, -1] > 0).all()  # the base's first order as a fraction
    ev = evaluate({"m": model, base: base}, {"preset": preset}, SEEDS[:20])
    by = ev.episodes.pivot(index="seed", columns="policy", values="objective_bps")
    assert by["m"].notna().all()
    assert (by["m"] - by[base]).abs().max() < 5.0  # near its base (a narrow start around action 0)
