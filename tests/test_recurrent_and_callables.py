"""``evaluate`` carries a recurrent policy's state across slices (equal to stepping the single env
episode by episode), and takes a plain function of a batch of observations as a policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import RecurrentPPO

from sb3_exec import CallablePolicy, ModelPolicy, evaluate, make_config, make_vec_env
from sb3_exec.seeding import evaluation_seeds

SEEDS = evaluation_seeds(6)
MARKET = {"preset": "liquidity"}


@pytest.fixture(scope="module")
def lstm() -> RecurrentPPO:
    """A RecurrentPPO (LSTM policy) trained briefly on the batched env, continuous fractions."""
    th.set_num_threads(1)
    env = make_vec_env(4, preset="liquidity", action_mode="fraction")
    env.seed(0)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        n_steps=16,
        batch_size=32,
        seed=0,
        policy_kwargs={"lstm_hidden_size": 16, "net_arch": [16]},
    )
    model.learn(256)
    return model


class Stateless:
    """The bug the rollout guards against: each slice predicted from a fresh (zero) state."""

    def __init__(self, model: RecurrentPPO) -> None:
        self.model, self.action_space = model, model.action_space

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return self.model.predict(obs, deterministic=deterministic)[0], None


def single_env_episodes(model: RecurrentPPO, seeds: list[int], carry: bool = True) -> np.ndarray:
    """Each episode's schedule objective (bps), stepping ``gymnasium.make`` with the LSTM state
    carried from slice to slice (as SB3's ``evaluate_policy`` does), or reset every slice."""
    out = []
    for seed in seeds:
        env = gym.make("sb3_exec/Execution-v0", **MARKET, action_mode="fraction")
        obs, _ = env.reset(seed=seed)
        state, start, done, info = None, np.ones(1, dtype=bool), False, {}
        while not done:
            action, new_state = model.predict(obs[None], state=state, episode_start=start, deterministic=True)
            state, start = (new_state, np.zeros(1, dtype=bool)) if carry else (None, np.ones(1, dtype=bool))
            obs, _, terminated, truncated, info = env.step(action[0])
            done = terminated or truncated
        out.append(info["schedule_objective_bps"])
    return np.array(out)


def test_a_recurrent_policy_equals_the_single_env_with_its_state_carried(lstm):
    single = single_env_episodes(lstm, SEEDS)
    # a batch of one episode: the same float32 network calls as the single env, the same numbers
    for seed, want in zip(SEEDS, single, strict=True):
        one = evaluate({"lstm": lstm}, MARKET, [seed]).episodes.schedule_objective_bps.iloc[0]
        assert abs(one - want) <= 1e-9, (seed, one, want)
    # all episodes in one batch: the float32 LSTM on a batch of 6 differs from 6 batches of one in
    # the last bits of the actions (2.5e-9 bps of 22 here), so relative 1e-9
    ev = evaluate({"lstm": lstm}, MARKET, SEEDS)  # the model's env names its interface (fraction)
    got = ev.episodes.schedule_objective_bps.to_numpy()
    np.testing.assert_allclose(got, single, rtol=1e-9, atol=0)
    # the test would catch the bug: without the state the numbers are others (those of the single
    # env stepped without it), by far more than the tolerance
    stateless = evaluate(
        {"pair": (Stateless(lstm), "fraction"), "lstm": ModelPolicy(Stateless(lstm), action_mode="fraction")},
        MARKET,
        SEEDS,
    )
    by = stateless.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    np.testing.assert_array_equal(by["pair"], by["lstm"])  # (model, mode) is ModelPolicy(model, action_mode=mode)
    wrong = by["lstm"].loc[SEEDS].to_numpy()
    np.testing.assert_allclose(wrong, single_env_episodes(lstm, SEEDS, carry=False), rtol=1e-9, atol=0)
    assert np.abs(wrong - got).min() > 1e-5, np.abs(wrong - got)  # 8e-5 to 6e-3 bps here
    # a second evaluation starts every episode afresh: the same numbers again
    np.testing.assert_array_equal(evaluate({"lstm": lstm}, MARKET, SEEDS).episodes.schedule_objective_bps, got)


def test_a_recurrent_policy_in_a_batch_with_others_is_unchanged(lstm):
    """Its state is its own: evaluated beside other policies and on a superset of the episodes,
    each episode's numbers stay those of the single env."""
    ev = evaluate({"twap": "twap", "lstm": lstm, "ac": "ac"}, MARKET, [*SEEDS, *evaluation_seeds(9)[6:]])
    mine = ev.episodes[ev.episodes.policy == "lstm"].set_index("seed").schedule_objective_bps
    np.testing.assert_allclose(mine.loc[SEEDS].to_numpy(), single_env_episodes(lstm, SEEDS), rtol=1e-9, atol=0)


def _twap_index() -> int:
    return make_config("liquidity").twap_multiples.index(1.0)


def test_a_plain_function_is_a_policy_with_its_interface_named():
    """The TWAP multiple 1.0 every slice is TWAP: a function choosing it equals the baseline on
    every episode, given as ``(fn, mode)``, as ``CallablePolicy``, or bare with the mode in the env."""
    k = _twap_index()

    def always_twap(obs: np.ndarray) -> np.ndarray:
        return np.full(len(obs), k)

    ev = evaluate(
        {
            "twap": "twap",
            "pair": (always_twap, "twap_multiple"),
            "cls": CallablePolicy(always_twap, action_mode="twap_multiple"),
        },
        MARKET,
        SEEDS,
    )
    by = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    np.testing.assert_allclose(by["pair"], by["twap"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(by["cls"], by["twap"], rtol=0, atol=1e-9)
    assert by["twap"].std() > 0.1  # a real market: the episodes differ
    bare = evaluate({"fn": always_twap}, {**MARKET, "action_mode": "twap_multiple"}, SEEDS)
    np.testing.assert_allclose(bare.episodes.schedule_objective_bps, by["twap"].loc[SEEDS], rtol=0, atol=1e-9)


def test_a_torch_module_through_a_function_and_a_box_interface():
    """A CleanRL-style torch actor (a tensor out) on the discrete grid, and a rule on fractions:
    trading 1/slices_left of what is left (``time_left`` is feature 0) is TWAP again."""
    k, T = _twap_index(), make_config("liquidity").T
    actor = th.nn.Linear(6, 12)
    with th.no_grad():
        actor.weight.zero_()
        actor.bias.copy_(th.nn.functional.one_hot(th.tensor(k), 12).float())
    ev = evaluate(
        {
            "twap": "twap",
            "torch": (lambda obs: actor(th.as_tensor(obs)).argmax(dim=1), "twap_multiple"),
            "rule": (lambda obs: 2.0 / np.maximum(np.rint(obs[:, :1] * T), 1) - 1.0, "fraction"),
        },
        MARKET,
        SEEDS,
    )
    by = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    np.testing.assert_allclose(by["torch"], by["twap"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(by["rule"], by["twap"], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "fn,mode,names",
    [
        (lambda obs: np.full(len(obs), 0.5), "twap_multiple", ["integers in [0, 12)", "float64", "'twap_multiple'"]),
        (lambda obs: np.full(len(obs), 3.0), "fraction", ["floats in [-1, 1]", "'fraction'"]),
        (lambda obs: np.zeros(2, dtype=int), "twap_multiple", ["shape (2,)", "6 integers"]),
    ],
)
def test_actions_outside_the_interface_are_refused(fn, mode, names):
    with pytest.raises(ValueError, match="policy: CallablePolicy") as exc:
        evaluate({"bad": (fn, mode)}, MARKET, SEEDS)
    assert all(n in str(exc.value) for n in names), str(exc.value)


def test_what_is_not_a_policy_is_named():
    with pytest.raises(ValueError, match="neither a Policy"):
        evaluate({"x": 3}, MARKET, SEEDS)
    with pytest.raises(TypeError, match="not callable"):
        CallablePolicy(3, action_mode="fraction")
