"""``ExecutionVecEnv``: an SB3 ``VecEnv`` that steps B episodes as arrays with the same dynamics.

Owns the batched env: seeding, auto-resets, the batch's action check and infos.

It is the single env's dynamics (``sb3_exec.dynamics``) on a batch, not a second model: for the
same seeds it yields exactly the same episodes as a ``DummyVecEnv`` of ``ExecutionEnv``\\ s
(observations, rewards, terminal infos, and per-step infos with ``step_infos=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from sb3_exec import actions, dynamics
from sb3_exec.config import ExecConfig, make_config
from sb3_exec.env import observation_space_for
from sb3_exec.market import Market, draw_market
from sb3_exec.rng import as_seeds, next_episode_seeds
from sb3_exec.seeding import TRAIN_HIGH, TRAIN_LOW

_NO_INFO: Any = MappingProxyType({})  # shared, read-only: the info of a step that ends nothing


class _EnvView:
    """What ``get_attr``/``env_method`` see of episode ``i`` of the batch."""

    render_mode = None

    def __init__(self, vec: ExecutionVecEnv, i: int) -> None:
        self._vec, self._i = vec, i

    @property
    def cfg(self) -> ExecConfig:
        return self._vec.cfg

    @property
    def preset(self) -> str | None:
        return self._vec.preset

    @property
    def action_space(self) -> gym.Space:
        return self._vec.action_space

    @property
    def observation_space(self) -> gym.Space:
        return self._vec.observation_space

    @property
    def episode_seed(self) -> int:
        market = self._vec.market
        assert market is not None
        return int(market.seeds[self._i])

    def get_wrapper_attr(self, name: str) -> Any:
        return getattr(self, name)


class ExecutionVecEnv(VecEnv):
    """``num_envs`` execution episodes stepped together as numpy arrays, with auto-reset.

    :param num_envs: batch size B
    :param preset: a preset name or an ``ExecConfig``
    :param step_infos: fill every step's info dict like the single env (costs about 1 us per
        episode per step); by default only the step that ends an episode gets an info (the
        episode metrics and ``terminal_observation``), the others share one empty read-only
        mapping, and the per-step values stay available as arrays in ``last_step``
    :param overrides: any ``ExecConfig`` field
    """

    def __init__(
        self, num_envs: int, preset: str | ExecConfig = "seed", step_infos: bool = False, **overrides: Any
    ) -> None:
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.cfg = make_config(preset, **overrides)
        self.preset = preset if isinstance(preset, str) else None  # the preset's name, if one
        self._views = [_EnvView(self, i) for i in range(int(num_envs))]
        super().__init__(int(num_envs), observation_space_for(self.cfg), actions.action_space(self.cfg))
        self.step_infos = step_infos
        self._trade = dynamics.kernel(self.cfg, dynamics.ARRAY)
        self._reward = dynamics.rewarder(self.cfg)
        self.market: Market | None = None
        self.state: dynamics.State | None = None
        self.last_step: dynamics.StepResult | None = None
        self._actions: np.ndarray | None = None

    # -- seeding and resets -------------------------------------------------------------
    def _first_seeds(self) -> np.ndarray:
        keys = []
        for s in self._seeds:
            if s is not None:
                keys.append(int(s))
            else:  # like an unseeded ExecutionEnv: its np_random draws the first episode
                rng, _ = seeding.np_random(None)
                keys.append(int(rng.integers(TRAIN_LOW, TRAIN_HIGH, dtype=np.uint64)))
        return as_seeds(keys)

    def reset(self) -> np.ndarray:
        """Start a fresh episode in every slot (seeds from ``seed()`` if given)."""
        keys = self._first_seeds()
        self.market = draw_market(self.cfg, keys)
        self.state = dynamics.initial_state(self.cfg, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return dynamics.observe(self.cfg, self.market, self.state)

    def _auto_reset(self, rows: np.ndarray) -> None:
        assert self.market is not None and self.state is not None
        keys = next_episode_seeds(self.market.seeds[rows])
        self.market.put(rows, draw_market(self.cfg, keys))
        self.state.put(rows, dynamics.initial_state(self.cfg, len(rows)))

    @property
    def reset_infos(self) -> list[dict[str, Any]]:
        """Each slot's current episode seed, as the single env's ``reset`` info."""
        if self.market is None:
            return [{} for _ in range(self.num_envs)]
        return [{"seed": int(k)} for k in self.market.seeds.tolist()]

    @reset_infos.setter
    def reset_infos(self, value: list[dict[str, Any]]) -> None:
        pass  # derived from the market; VecEnv.__init__ assigns an empty list

    # -- stepping -----------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        if isinstance(self.action_space, gym.spaces.Discrete):
            a = a.reshape(-1)
            bad = (
                (a.shape != (self.num_envs,))
                or a.dtype.kind not in "iu"
                or ((a < 0) | (a >= self.action_space.n)).any()
            )
        else:
            assert self.action_space.shape is not None  # a Box
            k = self.action_space.shape[0]
            a = a.reshape(self.num_envs, k) if a.size == self.num_envs * k else a
            bad = a.shape != (self.num_envs, k) or not np.isfinite(a).all() or (np.abs(a) > 1).any()
        if bad:
            raise ValueError(
                f"action: got {a!r} (shape {a.shape}); expected {self.num_envs} actions in {self.action_space}"
            )
        return a

    def step_wait(self) -> VecEnvStepReturn:
        if self.state is None or self._actions is None:
            raise RuntimeError("call reset() before step()")
        assert self.market is not None  # reset() sets it with the state
        if actions.interface(self.cfg).needs_base:
            raise RuntimeError(
                f"action_mode: {self.cfg.action_mode!r} acts on a base policy's order; build the env "
                f"with sb3_exec.wrappers.make_vec_env or wrap it in ResidualVecEnv"
            )
        a = self._check_actions(self._actions)
        self._actions = None
        return self.step_orders(*actions.orders(self.cfg, self.market, self.state, a))

    def step_orders(
        self, shares: np.ndarray, dark_order: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Step every episode with orders in shares (``(B,)`` lit, and dark orders with a dark
        venue): what ``step`` does after the action interface; finished episodes auto-reset."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        cfg, market, state = self.cfg, self.market, self.state
        assert market is not None  # reset() sets it with the state
        res = dynamics.step(cfg, market, state, shares, dark_order, self._trade)
        self.last_step = res
        rewards = self._reward(res)
        dones = res.terminated.copy()
        obs = dynamics.observe(cfg, market, state)
        if self.step_infos:
            columns = [np.asarray(v, dtype=np.float64).tolist() for v in dynamics.step_info_values(res)]
            infos: list[Any] = [
                dict(zip(dynamics.STEP_INFO_KEYS, vals, strict=True)) for vals in zip(*columns, strict=True)
            ]
        else:
            infos = [_NO_INFO] * self.num_envs
        if dones.any():
            rows = np.flatnonzero(dones)
            metrics = dynamics.episode_metrics(cfg, state)
            keys = (*metrics, "terminal_observation", "TimeLimit.truncated")
            columns = [v[rows].tolist() for v in metrics.values()]
            columns += [list(obs[rows]), [False] * len(rows)]
            for i, values in zip(rows.tolist(), zip(*columns, strict=True), strict=True):
                if self.step_infos:
                    infos[i].update(zip(keys, values, strict=True))
                else:
                    infos[i] = dict(zip(keys, values, strict=True))
            self._auto_reset(rows)
            obs = dynamics.observe(cfg, market, state)
        return obs, rewards, dones, infos

    # -- the VecEnv plumbing ------------------------------------------------------------
    def close(self) -> None:
        self.market = self.state = None

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self._views[i], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"{attr_name}: the batched env shares one config; build a new ExecutionVecEnv instead")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        return [getattr(self._views[i], method_name)(*method_args, **method_kwargs) for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
