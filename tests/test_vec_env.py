"""The batched VecEnv: identical to the single env, and SB3's VecEnv contract."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecMonitor

from sb3_exec import make_env, make_vec_env
from sb3_exec.vec_env import ExecutionVecEnv

MODES = ["participation", "twap_multiple", "continuous", "fraction", "fraction_grid"]


def _actions(space, rng, n):
    if space.__class__.__name__ == "Discrete":
        return rng.integers(0, space.n, size=n)
    return rng.uniform(-1, 1, size=(n, *space.shape)).astype(np.float32)


CASES = [(preset, mode, side) for preset in ("seed", "ac2000") for mode in MODES for side in ("sell", "buy")]
# the residual mode acts on the MPC, which needs additive impact: the liquidity preset (separable
# slices, episodes planned per row, dark venue on the buy side), and ac2000 (a risk term:
# episodes planned in groups at equal slices)
CASES += [("liquidity", "residual", "sell"), ("liquidity", "residual", "buy"), ("ac2000", "residual", "sell")]
# a residual on TWAP and on VWAP: bases that solve nothing, so any preset (the notebook's too)
CASES += [("seed", "residual:twap", "sell"), ("liquidity", "residual:vwap", "buy")]
# the interfaces on the slice's volume and on the expected remaining volume (pace features on)
CASES += [
    ("liquidity", "participation_rate", "sell"),
    ("liquidity", "pace_multiple", "sell"),
    ("liquidity", "pace_continuous", "buy"),
    ("ac2000", "pace_multiple", "buy"),
]


@pytest.mark.parametrize("preset, mode, side", CASES)
def test_vec_env_equals_single_envs_across_auto_resets(preset, mode, side):
    B, steps = 3, 120  # many episode boundaries on every preset
    mode, _, base = mode.partition(":")
    kwargs = dict(action_mode=mode, side=side, reward="schedule" if side == "buy" else "shortfall")
    if base:
        kwargs["residual_base"] = base
    if mode.startswith(("pace", "participation_rate")):
        kwargs["pace_features"] = True
    if preset == "liquidity":
        kwargs["T"] = 8
    if side == "buy":  # and the penalties, the order-flow signal and the dark venue on
        kwargs.update(
            aggressiveness_penalty=5.0,
            participation_change_penalty=20.0,
            signal_strength=0.1,
            signal_phi=0.7,
            dark_share=0.05,
            dark_adverse_bps=1.0,
        )
        if preset == "liquidity":  # the MPC's coupled solve is slow; ac2000 covers the groups
            kwargs.update(participation_change_penalty=0.0)
    vec = make_vec_env(B, preset, step_infos=True, **kwargs)
    vec.seed(100)
    singles = [make_env(preset, **kwargs) for _ in range(B)]
    obs_v = vec.reset()
    obs_s = np.stack([e.reset(seed=100 + i)[0] for i, e in enumerate(singles)])
    np.testing.assert_array_equal(obs_v, obs_s)
    rng = np.random.default_rng(0)
    boundaries = 0
    for _ in range(steps):
        actions = _actions(vec.action_space, rng, B)
        obs_v, rew_v, done_v, info_v = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, term, trunc, info = env.step(actions[i])
            assert rew_v[i] == r and done_v[i] == term
            if term:
                boundaries += 1
                np.testing.assert_array_equal(info_v[i].pop("terminal_observation"), o)
                assert info_v[i].pop("TimeLimit.truncated") is False
                o, _ = env.reset()
            assert info_v[i] == info
            np.testing.assert_array_equal(obs_v[i], o)
    assert boundaries >= 6


def test_terminal_infos_without_step_infos():
    vec = ExecutionVecEnv(4, "ac2000")
    vec.seed(0)
    vec.reset()
    for _ in range(5):
        _, _, dones, infos = vec.step(np.full(4, 4))
    assert dones.all()
    for info in infos:
        assert {"objective_bps", "schedule_objective_bps", "terminal_observation"} <= set(info)
    _, _, dones, infos = vec.step(np.full(4, 4))
    assert not dones.any() and all(len(i) == 0 for i in infos)
    with pytest.raises(TypeError):
        infos[0]["x"] = 1  # the shared empty info is read-only: no silent cross-talk
    assert vec.last_step.q.shape == (4,)


def test_seeding_and_reset():
    a, b = ExecutionVecEnv(5, "seed"), ExecutionVecEnv(5, "seed")
    a.seed(7)
    b.seed(7)
    np.testing.assert_array_equal(a.reset(), b.reset())
    a.seed(7)
    a.reset()
    assert [i["seed"] for i in a.reset_infos] == [7, 8, 9, 10, 11]
    for _ in range(60):
        oa, ra, *_ = a.step(np.full(5, 3))
        ob, rb, *_ = b.step(np.full(5, 3))
        np.testing.assert_array_equal(ra, rb)
    c = ExecutionVecEnv(5, "seed")
    c.seed(8)
    assert not np.array_equal(c.reset(), ExecutionVecEnv(5, "seed").reset())


def test_vec_env_contract():
    vec = ExecutionVecEnv(3, "ac2000")
    vec.seed(0)
    vec.reset()
    assert vec.get_attr("cfg")[0].T == 5 and len(vec.get_attr("cfg")) == 3
    assert vec.get_attr("episode_seed", indices=[1]) == [1]
    assert vec.env_method("get_wrapper_attr", "cfg", indices=0)[0].p0 == 50.0
    assert vec.env_is_wrapped(VecMonitor) == [False, False, False]
    with pytest.raises(AttributeError):
        vec.set_attr("cfg", None)
    with pytest.raises(ValueError, match="action"):
        vec.step(np.array([0, 1, 99]))
    with pytest.raises(ValueError, match="num_envs"):
        ExecutionVecEnv(0)
    with pytest.raises(ValueError, match="sigma"):
        ExecutionVecEnv(2, "seed", sigma=-1)
    vec.close()


def test_sb3_training_and_evaluate_policy_on_the_vec_env():
    vec = VecMonitor(ExecutionVecEnv(8, "ac2000", reward="schedule"))
    model = PPO("MlpPolicy", vec, n_steps=16, batch_size=64, seed=0)
    model.learn(256)
    mean, std = evaluate_policy(model, vec, n_eval_episodes=16)
    assert np.isfinite(mean) and -600 < mean < -200  # bps: between the optimum and worse than TWAP
    dqn = DQN("MlpPolicy", VecMonitor(ExecutionVecEnv(1, "ac2000")), learning_starts=20, seed=0)
    dqn.learn(100)
    assert len(dqn.ep_info_buffer) > 0
