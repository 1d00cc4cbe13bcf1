"""Transforms of what an agent sees and does, as wrappers around the envs, and the env factories.

- ``ResidualWrapper`` (Gymnasium) and ``ResidualVecEnv`` (SB3): the ``residual`` action interface,
  an agent scaling a base policy's order (the adaptive MPC by default; ``residual_base`` names
  any causal baseline). Both use ``policies.ResidualBase``, as ``evaluate`` does, so the three
  agree bit for bit; the dynamics know nothing of the base.
- ``make_env`` (the entry point of ``gymnasium.make("sb3_exec/Execution-v0", ...)``) and
  ``make_vec_env``: the env of a preset and options, wrapped where the action interface asks.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvStepReturn, VecEnvWrapper

from sb3_exec import actions, dynamics
from sb3_exec.config import ExecConfig
from sb3_exec.env import ExecutionEnv
from sb3_exec.policies import ResidualBase
from sb3_exec.vec_env import ExecutionVecEnv


def _extended(space: spaces.Space, base: ResidualBase) -> spaces.Box:
    assert isinstance(space, spaces.Box)
    low, high = base.bounds()
    return spaces.Box(np.concatenate([space.low, low]), np.concatenate([space.high, high]), dtype=np.float32)


def _require_residual(cfg: ExecConfig) -> None:
    if not actions.interface(cfg).needs_base:
        raise ValueError(f"action_mode: a residual wrapper needs action_mode='residual', got {cfg.action_mode!r}")


class ResidualWrapper(gym.Wrapper):
    """The residual interface on a single ``ExecutionEnv`` built with ``action_mode="residual"``.

    The action (``Box(-1, 1, (k,))``) is a multiplier on the base policy's lit order (and dark
    order, with a dark venue) for the slice (``actions.residual_multiplier``: 0 is the base);
    the observation gains the base's orders as fractions of the inventory left.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        inner = env.unwrapped
        if not isinstance(inner, ExecutionEnv):
            raise ValueError(f"env: a residual wrapper needs an ExecutionEnv, got {type(inner).__name__}")
        _require_residual(inner.cfg)
        self.cfg = inner.cfg
        self.base = ResidualBase(inner.cfg)
        self._inner = inner
        self._zeros = np.zeros(self.base.dims, dtype=np.float32)
        self.observation_space = _extended(env.observation_space, self.base)
        self._orders = (0.0, 0.0)

    def _with_base(self, obs: np.ndarray, reset: bool = False) -> np.ndarray:
        market, batch = self._inner.batch_view()
        if reset:  # before the episode's first slice (a causal base's reset reads the config only)
            self.base.reset(market)
        lit, dark = self.base.orders(market, batch)
        self._orders = (float(lit[0]), float(dark[0]))
        return np.concatenate([obs, self.base.features(batch.x, lit, dark)[0]])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._with_base(obs, reset=True), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        inner, cfg = self._inner, self.cfg
        if inner._state is None or inner._state.done:
            inner._refuse()  # before reset or after the episode's end
        a = inner._check_action(action)
        lit_a, dark_a = actions.split(cfg, a) if cfg.dark_venue else (a, None)
        lit, dark = self._orders
        shares = inner.interface.lit(cfg, dynamics.SCALAR, lit_a, inner._state.t, inner._state.x, 0.0, lit)
        dark_order = 0.0 if dark_a is None else actions.dark_order(cfg, dynamics.SCALAR, dark_a, 0.0, dark)
        obs, reward, terminated, truncated, info = inner.step_orders(shares, dark_order)
        obs = np.concatenate([obs, self._zeros]) if terminated else self._with_base(obs)
        return obs, reward, terminated, truncated, info


class ResidualVecEnv(VecEnvWrapper):
    """The residual interface on an ``ExecutionVecEnv`` built with ``action_mode="residual"``:
    the batched twin of ``ResidualWrapper`` (the same episodes, bit for bit)."""

    venv: ExecutionVecEnv

    def __init__(self, venv: ExecutionVecEnv) -> None:
        if not isinstance(venv, ExecutionVecEnv):
            raise ValueError(f"venv: a residual wrapper needs an ExecutionVecEnv, got {type(venv).__name__}")
        _require_residual(venv.cfg)
        self.base = ResidualBase(venv.cfg)
        super().__init__(venv, observation_space=_extended(venv.observation_space, self.base))
        self._orders: tuple[np.ndarray, np.ndarray] | None = None
        self._actions: np.ndarray | None = None

    def _with_base(self, obs: np.ndarray) -> np.ndarray:
        venv = self.venv
        assert venv.market is not None and venv.state is not None  # after reset
        self._orders = self.base.orders(venv.market, venv.state)
        return np.concatenate([obs, self.base.features(venv.state.x, *self._orders)], axis=1)

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        assert self.venv.market is not None
        self.base.reset(self.venv.market)
        return self._with_base(obs)

    def step_async(self, actions_: np.ndarray) -> None:
        self._actions = actions_

    def step_wait(self) -> VecEnvStepReturn:
        venv = self.venv
        if self._orders is None or self._actions is None:
            raise RuntimeError("call reset() before step()")
        a = venv._check_actions(self._actions)
        self._actions = None
        assert venv.market is not None and venv.state is not None  # after reset
        orders = actions.orders(venv.cfg, venv.market, venv.state, a, self._orders)
        obs, rewards, dones, infos = venv.step_orders(*orders)
        zeros = np.zeros(self.base.dims, dtype=np.float32)
        for i in np.flatnonzero(dones).tolist():
            infos[i]["terminal_observation"] = np.concatenate([infos[i]["terminal_observation"], zeros])
        return self._with_base(obs), rewards, dones, infos


def make_env(preset: str | ExecConfig = "seed", render_mode: str | None = None, **overrides: Any) -> gym.Env:
    """The single env of a preset and options (``gymnasium.make``'s entry point): an
    ``ExecutionEnv``, under ``ResidualWrapper`` for ``action_mode="residual"``."""
    env = ExecutionEnv(preset, render_mode=render_mode, **overrides)
    return ResidualWrapper(env) if env.interface.needs_base else env


def make_vec_env(
    num_envs: int, preset: str | ExecConfig = "seed", step_infos: bool = False, **overrides: Any
) -> VecEnv:
    """The batched env of a preset and options: an ``ExecutionVecEnv``, under
    ``ResidualVecEnv`` for ``action_mode="residual"``."""
    venv = ExecutionVecEnv(num_envs, preset, step_infos=step_infos, **overrides)
    return ResidualVecEnv(venv) if actions.interface(venv.cfg).needs_base else venv
