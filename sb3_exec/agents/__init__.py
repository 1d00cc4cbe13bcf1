"""Agents: a registry from names to SB3 algorithms with default hyperparameters in YAML.

A model built here carries its env options (preset, action interface, reward) as
``model.exec_env_kwargs``, which SB3 saves inside the model's zip; ``sb3_exec.evaluate`` acts
through them (``policies.ModelPolicy``).

Hyperparameters live in ``sb3_exec/agents/hyperparams/<name>.yml``, one file per agent, keyed by
preset with a ``default`` entry (the rl-baselines3-zoo convention). Besides the algorithm's own
keyword arguments an entry may hold ``n_timesteps`` (training budget), ``n_envs`` (parallel
episodes), ``env_kwargs`` (env options used for training, e.g. ``reward: schedule``),
``eval_freq`` (env steps between validations; default a fifth of the budget) and ``select``
(which checkpoint the agent is evaluated as: ``final``, the default, or ``best``, the one with
the lowest validation score, as rl-baselines3-zoo's ``best_model.zip``).
"""

from __future__ import annotations

import copy
import difflib
import inspect
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
import yaml
from sb3_contrib import QRDQN
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from sb3_exec.agents.ddqn import DoubleDQN
from sb3_exec.config import INTERFACE_FIELDS, PRESETS, ExecConfig, make_config
from sb3_exec.wrappers import make_vec_env

HYPERPARAMS_DIR = Path(__file__).parent / "hyperparams"
META_KEYS = ("n_timesteps", "n_envs", "env_kwargs", "eval_freq", "select")
SELECTIONS = {"final": "model.zip", "best": "best_model.zip"}  # select -> the checkpoint's file
ACTIVATIONS = {"tanh": th.nn.Tanh, "relu": th.nn.ReLU, "elu": th.nn.ELU}


@dataclass(frozen=True)
class AgentSpec:
    """A registered agent: its SB3 class and the action mode it acts in."""

    algo: type[BaseAlgorithm]
    action_mode: str
    description: str


AGENTS: dict[str, AgentSpec] = {
    "dqn": AgentSpec(DQN, "twap_multiple", "SB3 DQN on the TWAP-multiple grid"),
    "ddqn": AgentSpec(DoubleDQN, "twap_multiple", "Double DQN (sb3_exec) on the TWAP-multiple grid"),
    "qrdqn": AgentSpec(QRDQN, "twap_multiple", "sb3-contrib QR-DQN on the TWAP-multiple grid"),
    "ppo": AgentSpec(PPO, "fraction_grid", "SB3 PPO on the geometric grid of fractions of what is left"),
    "ppo_cont": AgentSpec(PPO, "continuous", "SB3 PPO with a continuous TWAP multiple"),
    "a2c": AgentSpec(A2C, "fraction_grid", "SB3 A2C on the geometric grid of fractions of what is left"),
    "ppo_frac": AgentSpec(PPO, "fraction", "SB3 PPO trading a continuous fraction of what is left"),
    "ppo_res": AgentSpec(PPO, "residual", "SB3 PPO scaling the adaptive MPC's trade (a residual policy)"),
    "ppo_res_dp": AgentSpec(PPO, "residual", "SB3 PPO scaling the causal optimum's (dp) trade (a residual policy)"),
}


def _check_agent(name: str) -> AgentSpec:
    if name not in AGENTS:
        raise ValueError(f"agent: unknown agent {name!r}; choose one of {sorted(AGENTS)}")
    return AGENTS[name]


@cache
def _load_yaml(name: str) -> dict[str, Any]:
    with open(HYPERPARAMS_DIR / f"{name}.yml") as f:
        return yaml.safe_load(f) or {}


def hyperparams(name: str, preset: str = "default") -> dict[str, Any]:
    """The agent's hyperparameters for a preset: the ``default`` entry updated by the preset's."""
    _check_agent(name)
    if preset != "default" and preset not in PRESETS:
        raise ValueError(f"preset: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    table = _load_yaml(name)
    params = copy.deepcopy(table.get("default", {}))
    for key, value in copy.deepcopy(table.get(preset, {})).items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key].update(value)
        else:
            params[key] = value
    return params


def selection(params: dict[str, Any]) -> str:
    """The checkpoint an agent is evaluated as (``select`` of its YAML entry): ``final`` or ``best``."""
    select = params.get("select", "final")
    if select not in SELECTIONS:
        raise ValueError(f"select: {select!r} is not a checkpoint; choose one of {sorted(SELECTIONS)}")
    return str(select)


def env_kwargs_for(name: str, preset: str, **overrides: Any) -> dict[str, Any]:
    """Env options an agent trains with: the preset, its action mode and the YAML's env_kwargs."""
    params = hyperparams(name, preset)
    kwargs = {
        "preset": preset,
        "action_mode": _check_agent(name).action_mode,
        **params.get("env_kwargs", {}),
        **overrides,
    }
    make_config(**kwargs)  # validate now, before anything runs
    return kwargs


def make_env(name: str, preset: str, seed: int = 0, n_envs: int | None = None, **env_overrides: Any) -> VecEnv:
    """The training env of an agent on a preset: the batched ``ExecutionVecEnv`` (``n_envs``
    from the YAML by default; wrapped for the residual interface) under SB3's ``VecMonitor``,
    seeded with ``seed``."""
    kwargs = env_kwargs_for(name, preset, **env_overrides)
    n = n_envs or hyperparams(name, preset).get("n_envs", 1)
    env = VecMonitor(make_vec_env(n, **kwargs))
    env.seed(seed)
    return env


def _algo_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in params.items() if k not in META_KEYS}
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    if isinstance(policy_kwargs.get("activation_fn"), str):
        policy_kwargs["activation_fn"] = ACTIVATIONS[policy_kwargs["activation_fn"]]
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


def check_hyperparams(name: str, params: dict[str, Any]) -> None:
    """Refuse keys the agent's algorithm does not take, naming the key and the nearest valid one
    (before anything is built: a typo would otherwise surface as a TypeError deep in SB3)."""
    algo = _check_agent(name).algo
    accepted = {p for p in inspect.signature(algo.__init__).parameters if p not in ("self", "env")}
    for key in params:
        if key in META_KEYS:
            raise ValueError(
                f"hyperparams: {name}: {key!r} is not an argument of {algo.__name__}; set it "
                f"in sb3_exec/agents/hyperparams/{name}.yml (or the budget with timesteps)"
            )
        if key not in accepted:
            near = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; {algo.__name__} takes {sorted(accepted)}"
            raise ValueError(f"hyperparams: {name}: {key!r} is not an argument of {algo.__name__}{hint}")


def make(
    name: str, env: gym.Env | VecEnv | str | None = None, seed: int = 0, preset: str | None = None, **overrides: Any
) -> BaseAlgorithm:
    """Build a registered agent with its default hyperparameters.

    :param name: a key of ``AGENTS`` (``dqn``, ``ddqn``, ``qrdqn``, ``ppo``, ``ppo_cont``, ``a2c``,
        ``ppo_frac``, ``ppo_res``, ``ppo_res_dp``)
    :param env: a Gymnasium env or SB3 VecEnv of ``sb3_exec/Execution-v0``; a preset name, or
        None with ``preset``, builds the agent's training VecEnv
    :param seed: the SB3 seed (weights, exploration and the env's episodes)
    :param preset: which YAML entry to use; defaults to the env's preset, else ``default``
    :param overrides: algorithm keyword arguments that replace the YAML's
    """
    spec = _check_agent(name)
    check_hyperparams(name, overrides)
    if isinstance(env, str):
        preset, env = env, None
    if env is None:
        if preset is None:
            raise ValueError("env: give an env or a preset")
        env = make_env(name, preset, seed=seed)
    env_preset = env_attr(env, "preset")
    params = hyperparams(name, preset or (env_preset if env_preset in PRESETS else "default"))
    kwargs = _algo_kwargs(params)
    kwargs.update(overrides)
    policy = kwargs.pop("policy", "MlpPolicy")
    model = spec.algo(policy, env, seed=seed, **kwargs)
    carry_interface(model, env)
    return model


def carry_interface(model: Any, env: gym.Env | VecEnv) -> None:
    """Store the env's preset, reward and action interface on the model as ``exec_env_kwargs``
    (SB3 saves it in the model's zip; ``policies.ModelPolicy`` acts through it); nothing for an
    env that is not an execution env."""
    cfg = env_config(env)
    if cfg is not None:
        model.exec_env_kwargs = {
            "preset": env_attr(env, "preset"),
            "reward": cfg.reward,
            **{k: getattr(cfg, k) for k in INTERFACE_FIELDS},
        }


def env_attr(env: gym.Env | VecEnv, name: str) -> Any:
    """An attribute of an execution env (single, wrapped or batched), or None."""
    try:
        if isinstance(env, VecEnv):
            return env.get_attr(name, indices=[0])[0]
        return getattr(env.unwrapped, name, None)
    except AttributeError:
        return None


def env_config(env: gym.Env | VecEnv) -> ExecConfig | None:
    """The ``ExecConfig`` of an execution env, or None for another env."""
    cfg = env_attr(env, "cfg")
    return cfg if isinstance(cfg, ExecConfig) else None


__all__ = [
    "AGENTS",
    "SELECTIONS",
    "AgentSpec",
    "DoubleDQN",
    "carry_interface",
    "check_hyperparams",
    "env_config",
    "env_kwargs_for",
    "hyperparams",
    "make",
    "make_env",
    "selection",
]
