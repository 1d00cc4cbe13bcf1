"""Policies built from models: a trained agent acting through its own action interface (carrying
a recurrent model's state), a plain function of observations (``CallablePolicy``), the residual
combinator (an agent scaling a base policy's orders), and ``as_policy``.

The residual interface is implemented once, by ``ResidualBase``: the base policy's orders for a
batch of episodes, the observation features they add, and the orders an action makes of them.
The Gymnasium wrapper, the VecEnv wrapper (``sb3_exec.wrappers``) and ``ModelPolicy`` in
``evaluate`` all use it; the dynamics know nothing of it.

A model carries its env options (``action_mode``, the grids, ``reward``, the residual's base):
``agents.make`` stores them on the model as ``exec_env_kwargs`` (saved inside the model's zip),
``train`` in ``meta.json``. ``ModelPolicy`` acts through them, so models trained on different
interfaces are evaluated on the same episodes in one call.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from sb3_exec import actions
from sb3_exec.baselines import BASELINES, Adaptive, Policy
from sb3_exec.config import INTERFACE_FIELDS, ExecConfig
from sb3_exec.dynamics import Market, State, observe

# the observation features a residual adds: the base's orders as fractions of the inventory left
RESIDUAL_NAMES = ("base_fraction", "base_dark_fraction")


def interface_options(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The action-interface fields of a mapping of env options (``INTERFACE_FIELDS``)."""
    return {k: v for k, v in env_kwargs.items() if k in INTERFACE_FIELDS}


class ResidualBase:
    """The residual interface's base policy for a config: its orders, the observation features
    they add (the lit order, and the dark order with a dark venue, as fractions of the inventory
    left, in [0, 1]) and the orders an action makes of them (``actions.Residual``).

    :param cfg: the config (its ``residual_base`` names the base, a causal baseline)
    :raises ValueError: an unknown or non-causal base, or one that cannot act on the config
    """

    def __init__(self, cfg: ExecConfig) -> None:
        name = cfg.residual_base
        if name not in BASELINES:
            raise ValueError(f"residual_base: unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
        # the MPC planned per episode: each episode's order does not depend on the batch
        base = Adaptive(per_row=True) if name == "adaptive" else BASELINES[name]()
        if not base.causal:
            raise ValueError(f"residual_base: {name!r} sees the future; a residual needs a causal base")
        reason = base.supports(cfg)
        if reason is not None:
            raise ValueError(f"action_mode: 'residual' acts on {name!r}, which cannot solve this config ({reason})")
        self.cfg, self.base, self.dims = cfg, base, 2 if cfg.dark_venue else 1
        self.names = RESIDUAL_NAMES[: self.dims]

    def reset(self, market: Market) -> None:
        """Before a batch's first slice (a causal base's reset reads the config only)."""
        self.base.reset(self.cfg, market)

    def orders(self, market: Market, state: State) -> tuple[np.ndarray, np.ndarray]:
        """The base's ``(lit, dark)`` orders for each episode at its current slice."""
        out = self.base.act(self.cfg, market, state)
        lit, dark = out if isinstance(out, tuple) else (out, None)
        lit = np.asarray(lit, dtype=np.float64).reshape(-1)
        return lit, np.zeros_like(lit) if dark is None else np.asarray(dark, dtype=np.float64).reshape(-1)

    def features(self, x: np.ndarray, lit: np.ndarray, dark: np.ndarray) -> np.ndarray:
        """``(B, dims)`` float32: the base's orders as fractions of the inventory ``x``."""
        inv_x = np.where(x > 0, 1.0 / np.maximum(x, 1e-300), 0.0)
        cols = (lit, dark)[: self.dims]
        out = np.empty((len(x), self.dims), dtype=np.float32)
        for j, order in enumerate(cols):
            out[:, j] = np.minimum(order * inv_x, 1.0)
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the added features."""
        return np.zeros(self.dims, dtype=np.float32), np.ones(self.dims, dtype=np.float32)


def env_options_of(model: Any) -> dict[str, Any]:
    """The env options a model was trained with: ``model.exec_env_kwargs`` (set by
    ``agents.make``, saved in its zip), else its env's config; ``{}`` when neither is known."""
    stored = getattr(model, "exec_env_kwargs", None)
    if isinstance(stored, Mapping):
        return dict(stored)
    env = model.get_env() if hasattr(model, "get_env") else None
    if env is not None:
        try:
            cfg = env.get_attr("cfg", indices=[0])[0]
        except (AttributeError, TypeError):
            return {}
        return {k: getattr(cfg, k) for k in INTERFACE_FIELDS}
    return {}


def _takes_state(model: Any) -> bool:
    """Whether ``model.predict`` takes a recurrent ``state`` and ``episode_start`` (SB3's does)."""
    try:
        params = inspect.signature(model.predict).parameters
    except (AttributeError, TypeError, ValueError):  # a builtin without a signature: call it the plain way
        return False
    return "state" in params and "episode_start" in params


class ModelPolicy(Policy):
    """A trained model (anything with SB3's ``predict``) acting through its own action interface.

    The interface is, in order: the explicit ``action_mode`` (with ``interface`` options such as
    ``twap_multiples``, ``residual_base``); the options the model carries (``env_options_of``);
    else the action mode of the config it is evaluated on. The config passed to ``evaluate``
    then describes the market only.

    A recurrent model (sb3-contrib's ``RecurrentPPO``, any ``predict`` that takes ``state`` and
    ``episode_start``) keeps one hidden state per episode of the batch: every episode starts at
    ``reset`` (``episode_start`` true at the first slice only) and the state returned by each
    ``predict`` is passed to the next, as SB3's ``evaluate_policy`` does on a VecEnv. Episodes
    that finished early go on being predicted for (their orders are masked by ``state.done``).

    :param model: an SB3 ``BaseAlgorithm`` (or any object with the same ``predict``)
    :param action_mode: the interface it was trained in (a name of ``actions.INTERFACES``)
    :param deterministic: use the greedy/mean action (the default for evaluation)
    :param interface: further interface fields (``INTERFACE_FIELDS``)
    """

    def __init__(
        self, model: Any, action_mode: str | None = None, deterministic: bool = True, **interface: Any
    ) -> None:
        unknown = sorted(set(interface) - set(INTERFACE_FIELDS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not an action-interface option; options are {INTERFACE_FIELDS}")
        self.model = model
        self.deterministic = deterministic
        self._stateful = _takes_state(model)
        self._hidden: Any = None
        self._starts = np.ones(0, dtype=bool)
        if action_mode is not None:
            self.options = {"action_mode": action_mode, **interface}
        else:
            self.options = interface_options({**env_options_of(model), **interface})

    def interface_config(self, cfg: ExecConfig) -> ExecConfig:
        """The evaluation config with the model's action interface."""
        return cfg.replace(**self.options) if self.options else cfg

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        self._cfg = acfg = self.interface_config(cfg)
        space = getattr(self.model, "action_space", None)
        expected = actions.action_space(acfg)
        if space is not None and space != expected:
            raise ValueError(
                f"action_mode: the model acts in {space}, but action_mode={acfg.action_mode!r} "
                f"expects {expected}; give the interface it was trained in (ModelPolicy(model, "
                f"action_mode=...))"
            )
        self._residual = ResidualBase(acfg) if actions.interface(acfg).needs_base else None
        if self._residual is not None:
            self._residual.reset(market)
        self._hidden = None  # a recurrent model's state: zeros for every episode of the batch
        self._starts = np.ones(len(market), dtype=bool)

    def act(self, cfg: ExecConfig, market: Market, state: State) -> Any:
        acfg = self._cfg
        obs = observe(acfg, market, state)
        base: tuple[Any, Any] = (0.0, 0.0)
        if self._residual is not None:
            base = self._residual.orders(market, state)
            obs = np.concatenate([obs, self._residual.features(state.x, *base)], axis=1)
        lit, dark = actions.orders(acfg, market, state, self.predict(obs), base)
        return lit if dark is None else (lit, dark)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """The model's actions for a batch of observations (one row per episode of the batch),
        carrying a recurrent model's state from the previous slice."""
        if not self._stateful:
            out, _ = self.model.predict(obs, deterministic=self.deterministic)
            return out
        out, self._hidden = self.model.predict(
            obs, state=self._hidden, episode_start=self._starts, deterministic=self.deterministic
        )
        self._starts = np.zeros(len(obs), dtype=bool)
        return out

    def __repr__(self) -> str:
        return f"ModelPolicy({type(self.model).__name__}, {self.options})"


class CallablePolicy(ModelPolicy):
    """A plain function from a batch of observations to a batch of actions, acting through a
    named action interface (a CleanRL-style torch module wrapped in a function, a rule).

    ``fn(obs)`` gets a ``(B, n_features)`` float32 array, one row per episode (the env's
    observation, ``dynamics.OBS_NAMES``, plus a residual's features) and returns ``B`` actions of
    the interface: integers in ``[0, n)`` for a discrete one, floats in ``[-1, 1]`` (``(B,)`` or
    ``(B, k)``) for a box one; a numpy array, a list or a CPU torch tensor. Actions outside the
    space are refused (a mistaken interface would otherwise trade something else silently).

    :param fn: the function
    :param action_mode: the interface it acts in (a name of ``actions.INTERFACES``); None: the
        action mode of the config it is evaluated on
    :param interface: further interface fields (``INTERFACE_FIELDS``: ``twap_multiples``...)
    """

    def __init__(self, fn: Callable[[np.ndarray], Any], action_mode: str | None = None, **interface: Any) -> None:
        if not callable(fn):
            raise TypeError(f"policy: {fn!r} is not callable")
        super().__init__(fn, action_mode, deterministic=True, **interface)
        self._stateful = False

    def predict(self, obs: np.ndarray) -> np.ndarray:
        """``fn(obs)``, checked against the interface's action space."""
        out = self.model(obs)
        if hasattr(out, "detach"):  # a torch tensor
            out = out.detach().cpu().numpy()
        a, space, n = np.asarray(out), actions.action_space(self._cfg), len(obs)
        if isinstance(space, spaces.Discrete):
            ok = a.size == n and a.dtype.kind in "iu" and bool(((a >= 0) & (a < space.n)).all())
            want = f"{n} integers in [0, {space.n})"
        else:
            assert space.shape is not None  # a Box
            ok = (
                a.size == n * space.shape[0]
                and a.dtype.kind in "iuf"
                and bool(np.isfinite(a).all())
                and bool((np.abs(a) <= 1).all())
            )
            want = f"{n} x {space.shape[0]} floats in [-1, 1]"
        if not ok:
            raise ValueError(
                f"policy: {self!r} returned actions of shape {a.shape}, dtype {a.dtype} "
                f"(first {a.reshape(-1)[:3].tolist()}); action_mode "
                f"{self._cfg.action_mode!r} takes {want} ({space})"
            )
        return a

    def __repr__(self) -> str:
        return f"CallablePolicy({getattr(self.model, '__name__', type(self.model).__name__)}, {self.options})"


def load_run(path: str | Path, deterministic: bool = True) -> ModelPolicy:
    """The policy of a run folder written by ``sb3_exec.train`` or ``experiments.compare``
    (``model.zip`` and ``meta.json``: the checkpoint its ``selected`` names, ``model.zip`` by
    default; a ``.zip`` path inside such a folder loads that model, e.g. ``best_model.zip``),
    acting through the env options it was trained with."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise ValueError(f"policy: {str(path)!r} is not a run folder (no meta.json beside the model)")
    meta = json.loads(meta_path.read_text())
    algo = meta.get("algo")
    if not algo:
        raise ValueError(
            f"policy: {meta_path} names no algorithm ('algo'); it was written by an "
            f"older sb3_exec: load it with sb3_exec.train.load and pass the model"
        )
    module, _, name = algo.partition(":")
    cls = getattr(importlib.import_module(module), name)
    model = cls.load(folder / meta.get("selected", "model.zip") if path.is_dir() else path, device="cpu")
    return ModelPolicy(model, deterministic=deterministic, **interface_options(meta["env_kwargs"]))


def as_policy(obj: Any) -> Policy:
    """Turn a policy, a baseline name, a run folder, a model with ``predict``, a function from a
    batch of observations to a batch of actions with its interface, ``(fn, "fraction")``, or a
    bare function (acting in the evaluation config's ``action_mode``) into a ``Policy``; a model
    given as ``(model, "fraction")`` acts in that interface (``ModelPolicy(model, action_mode=...)``)."""
    if isinstance(obj, Policy):
        return obj
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], str):  # (what acts, its interface)
        if hasattr(obj[0], "predict"):
            return ModelPolicy(obj[0], action_mode=obj[1])
        if callable(obj[0]):
            return CallablePolicy(obj[0], action_mode=obj[1])
    if isinstance(obj, (str, Path)):
        if obj in BASELINES:
            return BASELINES[str(obj)]()
        if Path(obj).exists():
            return load_run(obj)
        raise ValueError(f"policy: {obj!r} is neither a baseline ({sorted(BASELINES)}) nor a run folder")
    if hasattr(obj, "predict"):
        return ModelPolicy(obj)
    if callable(obj) and not inspect.isclass(obj):
        return CallablePolicy(obj)
    raise ValueError(
        f"policy: {obj!r} is neither a Policy, a baseline name, a run folder, a model with predict() "
        f"nor a function of observations (fn, or (fn, action_mode))"
    )
