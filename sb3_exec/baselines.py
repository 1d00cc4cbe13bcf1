"""The policy interface and the reference policies: TWAP, POV, VWAP, AC, Immediate, Adaptive, Oracle, DP.

A policy sees a batch of episodes at one slice and returns the shares each should trade; the
dynamics clip that to the inventory left and the participation cap. Causal policies read only
what is known at the slice: ``state`` (time, inventory), the current slice's volume and spread,
and the observation of ``dynamics.observe``. The ``market`` argument also holds the episode's
future, which only non-causal references (an oracle) may read. Trained models and the residual
combinator are in ``sb3_exec.policies``; the planners behind Adaptive and Oracle in
``sb3_exec.planning``, the dynamic programme behind DP in ``sb3_exec.dp``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_exec import dp
from sb3_exec.analytic import ac_holdings
from sb3_exec.config import ExecConfig
from sb3_exec.costs import schedule_cost_coefficients
from sb3_exec.dynamics import Market, State, slice_view
from sb3_exec.market import volume_profile
from sb3_exec.planning import coupled, mpc_orders, plan_with_deadline, require_support, risk_schedule, unsupported


class Policy:
    """Base class of every policy: ``act`` maps a batch of decision states to shares.

    ``causal``: whether the policy reads only what is known at the slice (False for a yardstick
    that knows the future); only a causal policy whose ``reset`` depends on the config alone can
    be the base of a residual agent.
    """

    causal = True

    def supports(self, cfg: ExecConfig) -> str | None:
        """Why the policy cannot act on a config (a message naming the field), or None."""
        return None

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        """Called once before slice 0 of a batch of episodes (precompute schedules here)."""

    def act(self, cfg: ExecConfig, market: Market, state: State) -> Any:
        """Shares to trade at the current slice, ``(B,)`` float; with a dark venue a pair
        ``(lit shares, dark order)`` may be returned instead (lit only: no dark order)."""
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


class VWAP(Policy):
    """Volume-weighted: the remaining order spread over the remaining slices in proportion to
    the expected volume profile (TWAP when the profile is flat)."""

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        profile = cfg.vol_mu * volume_profile(cfg)  # expected volume of each slice
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


class Oracle(Policy):
    """The best schedule for each episode with its whole liquidity path known in advance.

    Knows the volumes, spreads and predictable drift of every slice (not the unpredictable price
    innovations) and trades the exact minimiser of the episode's schedule objective under the
    same participation cap every policy obeys: water-filling (``planning.water_fill``) where the
    slices separate, the Almgren-Chriss closed form for its exact model, and a small convex solve
    (``coupled_fill``) where a risk term or the participation-change penalty couples the slices.
    So on every episode no policy has a lower schedule objective, and in expectation no causal
    policy has a lower shortfall. Not causal: a yardstick, not a strategy. Needs additive impact
    (``planning.unsupported`` says why where it cannot be solved).
    """

    causal = False

    def supports(self, cfg: ExecConfig) -> str | None:
        return unsupported(cfg)

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        require_support(cfg)
        if cfg.risk_aversion > 0 and not coupled(cfg):
            self._plan = risk_schedule(cfg, np.full(len(market), cfg.Q0), 0)
            return
        a, b, c = schedule_cost_coefficients(cfg, market.volume, market.half_spread, market.mid_sched)
        self._plan, self._dark = plan_with_deadline(
            cfg,
            a,
            b,
            c,
            market.volume,
            market.mid_sched,
            np.full(len(market), cfg.Q0),
            dark=market.dark if cfg.dark_venue else None,
        )

    def act(self, cfg: ExecConfig, market: Market, state: State) -> Any:
        rows, t = slice_view(market, state)
        if cfg.dark_venue:
            return self._plan[rows, t], self._dark[rows, t]
        return self._plan[rows, t]


class Adaptive(Policy):
    """Certainty-equivalent model-predictive control, the strongest classical baseline.

    At every slice it solves the oracle's problem over the remaining slices with the slice's
    observed volume and spread and the model's conditional expectations for later slices, and
    trades the first slice of that plan (``planning.mpc_orders``). Causal. On ``ac2000`` it is
    the Almgren-Chriss schedule.

    :param per_row: plan each episode over all ``T`` slices, so that its orders do not depend on
        the rest of the batch (the base of a residual agent: the single env and the batched env
        then agree bit for bit); the default plans a batch in lockstep over the slices left
    """

    def __init__(self, per_row: bool = False) -> None:
        self.per_row = per_row

    def supports(self, cfg: ExecConfig) -> str | None:
        return unsupported(cfg)

    def act(self, cfg: ExecConfig, market: Market, state: State) -> Any:
        lit, dark = mpc_orders(cfg, market, state, per_row=self.per_row)
        return lit if dark is None else (lit, dark)


class DP(Policy):
    """The causal optimum: the policy that solves the dynamic programme of ``sb3_exec.dp`` over
    ``(t, x, volume state, spread state)`` (and the order-flow signal, with a dark order as a
    second control, on ``lob``). Causal: it reads the slice's observed volume, spread and signal,
    and the model's transition law for the rest. On the exact Almgren-Chriss model it is
    the closed form; on ``liquidity`` it is the best any policy that does not see the future can
    do. ``dp.unsupported`` says why where it cannot represent a config.

    :param grid: the DP's grid sizes (``dp.Grid``; the defaults are converged)
    :param progress: show a progress bar while solving (a cached solution loads at once)
    """

    def __init__(self, grid: dp.Grid | None = None, progress: bool = True) -> None:
        self.grid = grid  # None: the config's converged default (dp.default_grid)
        self.progress = progress
        self._solution: dp.Solution | None = None

    def supports(self, cfg: ExecConfig) -> str | None:
        return dp.unsupported(cfg)

    def solution(self, cfg: ExecConfig) -> dp.Solution:
        """The solved DP of a config (solved once, then cached in memory and on disk)."""
        if self._solution is None or self._solution.cfg != cfg:
            self._solution = dp.solve(cfg, self.grid, progress=self.progress)
        return self._solution

    def reset(self, cfg: ExecConfig, market: Market) -> None:
        self.solution(cfg)

    def act(self, cfg: ExecConfig, market: Market, state: State) -> Any:
        sol = self.solution(cfg)
        lit, dark = np.zeros(len(state.t)), np.zeros(len(state.t))
        live = ~state.done & (state.t < cfg.T)
        for t in np.unique(state.t[live]).tolist():
            rows = np.flatnonzero(live & (state.t == t))
            lit[rows], dark[rows], _ = sol.decide(
                t, state.x[rows], market.volume[rows, t], market.half_spread[rows, t], market.signal[rows, t]
            )
        return (lit, dark) if cfg.dark_venue else lit

    def predicted_bps(self, cfg: ExecConfig, market: Market) -> np.ndarray:
        """The solver's own value at each episode's initial state, bps (``dp.Solution.predicted_bps``)."""
        return self.solution(cfg).predicted_bps(market.volume[:, 0], market.half_spread[:, 0], market.signal[:, 0])


BASELINES: dict[str, type[Policy]] = {
    "twap": TWAP,
    "pov": POV,
    "vwap": VWAP,
    "ac": AlmgrenChriss,
    "immediate": Immediate,
    "adaptive": Adaptive,
    "oracle": Oracle,
    "dp": DP,
}
CLASSICAL = ("twap", "pov", "vwap", "ac", "immediate")


def baselines_for(cfg: ExecConfig) -> list[str]:
    """The baselines a config supports: the classical ones always; ``adaptive`` and ``oracle``
    where impact is additive; ``dp``, the causal optimum, where its state can represent the
    market (``dp.unsupported``)."""
    names = list(CLASSICAL)
    if unsupported(cfg):
        return names
    return names + ["adaptive", "oracle"] + ([] if dp.unsupported(cfg) else ["dp"])
