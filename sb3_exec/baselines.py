"""Reference policies that trade in shares, and the one policy interface they share with SB3 models.

A policy sees a batch of episodes at one slice and returns the shares each should trade; the
dynamics clip that to the inventory left and the participation cap. Causal policies read only
what is known at the slice: ``state`` (time, inventory), the current slice's volume and spread,
and the observation of ``dynamics.observe``. The ``market`` argument also holds the episode's
future, which only non-causal references (an oracle) may read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_exec.analytic import ac_holdings
from sb3_exec.config import ExecConfig
from sb3_exec.dynamics import Market, State, action_to_shares, observe, slice_view


class Policy:
    """Base class of every policy: ``act`` maps a batch of decision states to shares."""

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        """Called once before slice 0 of a batch of episodes (precompute schedules here)."""

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        """Shares to trade at the current slice, ``(B,)`` float."""
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class TWAP(Policy):
    """Time-weighted: exactly the remaining order over the remaining slices."""

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        return state.x / np.maximum(cfg.T - state.t, 1)


class POV(Policy):
    """Percentage of volume: ``rate`` times the slice's market volume until the order is done.

    :param rate: participation rate in (0, 1]; the config's ``max_participation`` still caps it
    """

    def __init__(self, rate: float = 0.1) -> None:
        if not (isinstance(rate, (int, float)) and 0.0 < rate <= 1.0):
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        self.rate = float(rate)

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        rows, t = slice_view(market, state)
        return self.rate * market.volume[rows, t]


def expected_volume_profile(cfg: ExecConfig) -> np.ndarray:
    """Expected market volume of each slice, ``(T,)`` shares (flat in the current presets)."""
    return np.full(cfg.T, cfg.vol_mu)


class VWAP(Policy):
    """Volume-weighted: the remaining order spread over the remaining slices in proportion to
    the expected volume profile (TWAP when the profile is flat)."""

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        profile = expected_volume_profile(cfg)
        self._share = profile / np.cumsum(profile[::-1])[::-1]  # slice's share of what remains

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        return state.x * self._share[np.minimum(state.t, cfg.T - 1)]


class AlmgrenChriss(Policy):
    """The Almgren-Chriss closed-form schedule for the config's risk aversion (TWAP at 0).

    It trades towards the closed-form holdings after each slice, so it follows the schedule
    exactly where nothing binds, and catches up where a cap held it back.

    :param risk_aversion: overrides the config's lambda (1/$) when given
    """

    def __init__(self, risk_aversion: float | None = None) -> None:
        if risk_aversion is not None and not (
            isinstance(risk_aversion, (int, float)) and np.isfinite(risk_aversion) and risk_aversion >= 0
        ):
            raise ValueError(f"risk_aversion must be a finite number >= 0, got {risk_aversion!r}")
        self.risk_aversion = risk_aversion

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        if self.risk_aversion is not None:
            cfg = cfg.replace(risk_aversion=self.risk_aversion)
        self._holdings = ac_holdings(cfg)

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        target = self._holdings[np.minimum(state.t + 1, cfg.T)]
        return np.maximum(state.x - target, 0.0)


class Immediate(Policy):
    """Everything at once (as fast as the participation cap allows)."""

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        return state.x.copy()


class ModelPolicy(Policy):
    """A trained SB3 model (anything with ``predict``) acting through the config's action mode.

    :param model: an SB3 ``BaseAlgorithm`` (or any object with the same ``predict``)
    :param deterministic: use the greedy/mean action (the default for evaluation)
    """

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        from sb3_exec.env import action_space_for  # the env module imports gymnasium

        space = getattr(self.model, "action_space", None)
        expected = action_space_for(cfg)
        if space is not None and space != expected:
            raise ValueError(
                f"action_mode: the model acts in {space}, but action_mode={cfg.action_mode!r} "
                f"expects {expected}; evaluate with the action mode it was trained on"
            )

    def act(self, cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
        actions, _ = self.model.predict(observe(cfg, market, state), deterministic=self.deterministic)
        return action_to_shares(cfg, market, state, actions)


BASELINES: dict[str, type[Policy]] = {
    "twap": TWAP,
    "pov": POV,
    "vwap": VWAP,
    "ac": AlmgrenChriss,
    "immediate": Immediate,
}


def as_policy(obj: Any) -> Policy:
    """Turn a policy, a baseline name, or an SB3 model into a ``Policy``."""
    if isinstance(obj, Policy):
        return obj
    if isinstance(obj, str):
        if obj not in BASELINES:
            raise ValueError(f"policy: unknown baseline {obj!r}; choose one of {sorted(BASELINES)}")
        return BASELINES[obj]()
    if hasattr(obj, "predict"):
        return ModelPolicy(obj)
    raise ValueError(
        f"policy: {obj!r} is neither a Policy, a baseline name nor a model with predict()"
    )
