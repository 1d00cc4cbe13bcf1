"""The execution model's state and one slice's step: the trade, the observation, the episode totals.

Owns the per-episode state (``State``), the slice kernel (``kernel``, built once per config), the
observation (``slice_features``, ``state_features``, ``observe``), the reward and the episode
totals (``episode_metrics``). No policy and no action interface lives here (those are
``sb3_exec.actions`` and ``sb3_exec.baselines``): a step takes orders in shares. The costs
themselves come from ``sb3_exec.costs``. One implementation serves the single Gymnasium env, the
batched env and ``evaluate``: the kernel and the features are written once with plain arithmetic
and an ``ops`` namespace (``ARRAY`` for numpy arrays of ``B`` episodes, ``SCALAR`` for the Python
floats of one episode), so both paths run the same lines and give bit-identical numbers.

Per slice ``t`` (``side`` = +1 for a sell, -1 for a buy; ``perm`` the adverse permanent impact
accumulated in $/share):

- the order trades ``q = clip(shares, 0, min(x, max_participation * V_t))``;
- ``perm += kappa * q``;
- the execution mid is ``m = max(0.01, mid_t - side * perm' + noise_t)``, ``perm'`` including this
  slice's own impact when ``own_impact`` (the notebook) and excluding it otherwise (Almgren-Chriss),
  ``mid_t`` the exogenous mid, including slice ``t``'s price innovation when
  ``shock_before_trade`` (the notebook) and only earlier ones otherwise (Almgren-Chriss);
- the execution price is ``px = m - side * (half_spread_t + tmp)`` with temporary impact
  ``tmp = eta * (q / V_t) * m`` (``temp_impact="participation"``), ``eta * q / dt`` (``"rate"``),
  ``eta * p0 * q / V_t`` (``"linear"``) or ``eta * p0 * sqrt(q / V_t)`` (``"sqrt"``);
- the slice costs ``side * (p0 - px) * q`` dollars and the risk term adds
  ``risk_aversion * (p0*sigma)^2 * dt * x_after^2``;
- inventory left after the last slice is force-liquidated at the last slice's mid with
  ``deadline_penalty`` times the temporary impact (and the half-spread).

The schedule cost re-prices the same trades on the same episode with the unpredictable price
innovations (price shocks and microstructure noise) set to zero: its mid is
``max(0.01, mid_sched_t - side * perm')`` with ``mid_sched`` the predictable part of the mid.
It is computed in the same pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, cast

import numpy as np

from sb3_exec.config import ExecConfig
from sb3_exec.costs import impact
from sb3_exec.market import Market

MIN_PRICE = 0.01  # $/share; the notebook's floor on the mid
OBS_NAMES = ("time_left", "inventory_left", "volume", "spread", "price_move", "last_participation")
OBS_LOW = np.array([0, 0, 0, 0, -1000, 0], dtype=np.float32)
OBS_HIGH = np.array([1, 1, 100, 100, 1000, 1], dtype=np.float32)
# with the order-flow signal on (``cfg.lob_features``): signal, depth imbalance, last volume
LOB_NAMES = ("signal", "depth_imbalance", "last_volume")
LOB_LOW = np.array([-10, -1, 0], dtype=np.float32)
LOB_HIGH = np.array([10, 1, 100], dtype=np.float32)
# with ``cfg.pace_features``: the expected volume of the slices left (this one included) as a
# share of the day's expected volume ``T vol_mu`` (``market.remaining_volume``), and the
# participation the inventory left needs on it as a share of the cap (1: at the cap)
PACE_NAMES = ("remaining_volume", "required_participation")
PACE_LOW = np.array([0, 0], dtype=np.float32)
PACE_HIGH = np.array([100, 100], dtype=np.float32)
# the bounds as Python floats, for clipping
_VOLUME_MAX, _SPREAD_MAX, _MOVE_MIN, _MOVE_MAX = (
    float(OBS_HIGH[2]),
    float(OBS_HIGH[3]),
    float(OBS_LOW[4]),
    float(OBS_HIGH[4]),
)
_SIGNAL_MIN, _SIGNAL_MAX, _LAST_VOLUME_MAX = float(LOB_LOW[0]), float(LOB_HIGH[0]), float(LOB_HIGH[2])
_REMAINING_MAX, _REQUIRED_MAX = float(PACE_HIGH[0]), float(PACE_HIGH[1])


def obs_names(cfg: ExecConfig) -> tuple[str, ...]:
    """The names of a config's observation features, in order."""
    return OBS_NAMES + (LOB_NAMES if cfg.lob_features else ()) + (PACE_NAMES if cfg.pace_features else ())


def obs_bounds(cfg: ExecConfig) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of a config's observation."""
    low, high = [OBS_LOW], [OBS_HIGH]
    if cfg.lob_features:
        low.append(LOB_LOW)
        high.append(LOB_HIGH)
    if cfg.pace_features:
        low.append(PACE_LOW)
        high.append(PACE_HIGH)
    return np.concatenate(low), np.concatenate(high)


@dataclass(slots=True)
class State:
    """Per-episode execution state: ``(B,)`` arrays."""

    t: np.ndarray  # next slice to trade (T once the deadline has passed)
    x: np.ndarray  # shares left
    perm: np.ndarray  # adverse permanent impact accumulated ($/share, >= 0)
    cost: np.ndarray  # realized shortfall so far ($)
    sched_cost: np.ndarray  # schedule cost so far ($)
    risk: np.ndarray  # risk term so far ($)
    penalty: np.ndarray  # participation penalties so far ($)
    forced: np.ndarray  # shares force-liquidated at the deadline
    last_part: np.ndarray  # participation q/V of the last slice traded
    part_sum: np.ndarray  # sum of the participations of the slices traded
    done: np.ndarray  # bool: order complete or deadline passed

    def put(self, rows: np.ndarray, other: State) -> None:
        """Overwrite episodes ``rows`` with ``other``'s."""
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


class _ArrayOps:
    """Element-wise helpers for numpy arrays of episodes."""

    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)

    @staticmethod
    def any(a: np.ndarray) -> bool:
        return bool(np.any(a))

    @staticmethod
    def lookup(table: tuple[float, ...], i: np.ndarray) -> np.ndarray:
        return np.asarray(table)[np.asarray(i, dtype=np.int64).reshape(-1)]


class _ScalarOps:
    """The same helpers for the Python floats of a single episode (fast for one episode)."""

    any = staticmethod(bool)

    @staticmethod
    def minimum(a: Any, b: Any) -> Any:  # the builtin min(a, b), exactly (ties and NaN: a), faster
        return b if b < a else a

    @staticmethod
    def maximum(a: Any, b: Any) -> Any:  # the builtin max(a, b), exactly
        return b if b > a else a

    @staticmethod
    def where(cond: bool, a: float, b: float) -> float:
        return a if cond else b

    @staticmethod
    def lookup(table: tuple[float, ...], i: Any) -> float:
        return table[int(i)]


ARRAY, SCALAR = _ArrayOps(), _ScalarOps()


class StepResult(NamedTuple):
    """What one slice did, per episode (floats, or ``(B,)`` arrays; zeros for episodes done)."""

    q: Any  # shares traded in the slice (excluding the deadline liquidation)
    px: Any  # execution price ($/share)
    mid: Any  # execution mid ($/share)
    part: Any  # participation q / V
    cost: Any  # realized cost of the slice, deadline liquidation included ($)
    sched_cost: Any  # schedule cost of the slice ($)
    risk: Any  # risk term of the slice ($)
    penalty: Any  # participation penalties of the slice ($)
    dark_fill: Any  # shares filled in the dark venue
    x: Any  # shares left after the slice
    perm: Any  # adverse permanent impact after the slice ($/share)
    left: Any  # shares force-liquidated at the deadline in this slice
    terminated: Any  # bool: the episode ended with this slice


def initial_state(cfg: ExecConfig, n: int | None = None) -> State:
    """``n`` fresh episodes as arrays (or one episode as Python floats when ``n`` is None):
    the whole order left, nothing traded."""
    if n is None:
        return cast(Any, State)(
            t=0,
            x=float(cfg.Q0),
            perm=0.0,
            cost=0.0,
            sched_cost=0.0,
            risk=0.0,
            penalty=0.0,
            forced=0.0,
            last_part=0.0,
            part_sum=0.0,
            done=False,
        )  # one episode: Python floats in the array fields
    z = np.zeros(n)
    return State(
        t=np.zeros(n, dtype=np.int64),
        x=np.full(n, cfg.Q0),
        perm=z.copy(),
        cost=z.copy(),
        sched_cost=z.copy(),
        risk=z.copy(),
        penalty=z.copy(),
        forced=z.copy(),
        last_part=z.copy(),
        part_sum=z.copy(),
        done=np.zeros(n, dtype=bool),
    )


MARKET_ROW = ("volume", "half_spread", "mid", "noise", "mid_sched", "dark")  # the kernel's last arguments


def kernel(cfg: ExecConfig, ops: Any) -> Callable[..., StepResult]:
    """The slice step of a config (see the module doc), with the config's constants bound once:
    the single source of the dynamics. The single env builds it once with ``ops=SCALAR`` (Python
    floats), the batch with ``ops=ARRAY``; both run these lines and agree bit for bit.

    The step's arguments: the shares asked for, the dark order (with a dark venue), the shares
    held ``x``, the adverse permanent impact ``perm``, the previous participation, the slice
    count after this one ``t_next``, then the slice's market values (``MARKET_ROW``): volume,
    half-spread, exogenous mid, noise, the mid without innovations, the hidden dark liquidity
    (the dark order fills first, at the mid, and the lit order trades from what is left).
    """
    side, p0, T = cfg.sign, cfg.p0, cfg.T
    kappa, own_impact, cap, dust = cfg.kappa, cfg.own_impact, cfg.max_participation, cfg.Q0 * 1e-12
    kind = impact(cfg)
    per_share, additive = kind.bind(cfg), kind.additive
    dark_venue, dark_adverse = cfg.dark_venue, cfg.dark_adverse_bps * 1e-4 * p0
    deadline_penalty, risk_aversion = cfg.deadline_penalty, cfg.risk_aversion
    aggressiveness, change_weight = cfg.aggressiveness_penalty, cfg.participation_change_penalty
    minimum, maximum, where, any_ = ops.minimum, ops.maximum, ops.where, ops.any
    new = tuple.__new__  # StepResult(...) without its Python-level __new__ (the step is hot)

    def trade(
        shares: Any,
        dark_order: Any,
        x: Any,
        perm: Any,
        last_part: Any,
        t_next: Any,
        volume: Any,
        half_spread: Any,
        mid_exo: Any,
        noise: Any,
        mid_sched: Any,
        dark_liquidity: Any,
    ) -> StepResult:
        if dark_venue:
            dark_fill = minimum(minimum(maximum(dark_order, 0.0), dark_liquidity), x)
            x = x - dark_fill
        else:
            dark_fill = x * 0.0
        q = minimum(maximum(shares, 0.0), minimum(x, cap * volume))
        perm_after = perm + kappa * q
        adverse = side * (perm_after if own_impact else perm)
        mid = maximum(MIN_PRICE, mid_exo - adverse + noise)
        mid_s = maximum(MIN_PRICE, mid_sched - adverse)
        part = q / volume
        tmp = per_share(q, volume, mid)
        # impact additive in dollars does not depend on the mid: the schedule cost pays the same
        tmp_s = tmp if additive else per_share(q, volume, mid_s)
        px = mid - side * (half_spread + tmp)
        cost = (side * (p0 - mid) + half_spread + tmp) * q
        sched = (side * (p0 - mid_s) + half_spread + tmp_s) * q
        if dark_venue:  # at the mid, no spread, no impact; adverse selection per share
            cost = cost + (side * (p0 - mid) + dark_adverse) * dark_fill
            sched = sched + (side * (p0 - mid_s) + dark_adverse) * dark_fill
        x_after = x - q
        x_after = where(x_after <= dust, 0.0, x_after)  # float dust from x - x/k*k
        over = t_next >= T
        left = where(over, x_after, 0.0)  # forced liquidation of what the deadline finds
        if any_(left > 0):
            forced = per_share(left, volume, mid)
            forced_s = forced if additive else per_share(left, volume, mid_s)
            cost = cost + (side * (p0 - mid) + half_spread + deadline_penalty * forced) * left
            sched = sched + (side * (p0 - mid_s) + half_spread + deadline_penalty * forced_s) * left
            x_after = x_after - left
        if risk_aversion:
            risk = (risk_aversion * cfg.sigma_dollars**2 * cfg.dt) * x_after * x_after
        else:
            risk = part * 0.0
        if aggressiveness or change_weight:
            change = (part - last_part) * (t_next > 1)  # no previous slice before the first
            penalty = (aggressiveness * part * part + change_weight * change * change) * (cfg.notional / 1e4)
        else:
            penalty = part * 0.0
        return new(
            StepResult,
            (q, px, mid, part, cost, sched, risk, penalty, dark_fill, x_after, perm_after, left, (x_after <= 0) | over),
        )

    return trade


def slice_view(market: Market, state: State) -> tuple[np.ndarray, np.ndarray]:
    """Row and (clipped) column indices of each episode's current slice."""
    return np.arange(len(state.t)), np.minimum(state.t, market.volume.shape[1] - 1)


def flat_index(market: Market, state: State) -> np.ndarray:
    """Index of each episode's current slice into the raveled ``(B, T)`` market arrays."""
    return np.minimum(state.t, market.volume.shape[1] - 1) + market.row_offsets


def step(
    cfg: ExecConfig,
    market: Market,
    state: State,
    shares: np.ndarray,
    dark_order: np.ndarray | None = None,
    trade: Callable[..., StepResult] | None = None,
) -> StepResult:
    """Trade one slice of every episode of a batch in place; episodes already done do nothing
    (they hold no shares, so they trade none, and their clock stops). ``dark_order``: shares
    posted in the dark venue (with ``cfg.dark_venue``)."""
    idx = flat_index(market, state)
    done = state.done
    all_active = not done.any()
    res = (trade or kernel(cfg, ARRAY))(
        shares,
        0.0 if dark_order is None else dark_order,
        state.x,
        state.perm,
        state.last_part,
        state.t + 1 if all_active else state.t + ~done,
        *(getattr(market, name).take(idx) for name in MARKET_ROW),
    )
    if all_active:
        state.t = state.t + 1
        state.last_part = res.part
    else:
        res.terminated[done] = False
        res.penalty[done] = 0.0
        res.px[done] = 0.0
        res.mid[done] = 0.0
        state.t = state.t + ~done
        state.last_part = np.where(done, state.last_part, res.part)
    accumulate(state, res)
    state.done = done | res.terminated
    return res


def accumulate(state: State, res: StepResult) -> None:
    """Carry a slice's outcome into the running totals of one episode or a batch."""
    state.x = res.x
    state.perm = res.perm
    state.cost += res.cost
    state.sched_cost += res.sched_cost
    state.risk += res.risk
    state.penalty += res.penalty
    state.forced += res.left
    state.part_sum += res.part


def slice_features(
    cfg: ExecConfig, ops: Any, t: Any, volume: Any, half_spread: Any, lob: tuple[Any, ...] = (), remaining: Any = None
) -> tuple[Any, ...]:
    """The features that depend on the slice alone, in float64, clipped to the space's bounds:
    time left, volume, spread (``volume`` and ``half_spread`` 0 after the deadline), then the
    ``LOB_NAMES`` features when ``lob`` = (signal, imbalance, last volume) is given, then, when
    ``remaining`` (``Market.remaining``, 0 after the deadline) is given, the expected remaining
    volume over the day's expected volume, and ``Q0 / (R_t cap)`` (0 after the deadline;
    ``observer`` turns it into the required participation as a share of the cap). A function of the market, so the single env computes them for a
    whole episode at its reset."""
    ref_spread = max(cfg.spread_bps * 1e-4 * cfg.p0, 1e-12)
    out: tuple[Any, ...] = (
        (cfg.T - t) * (1.0 / cfg.T),
        ops.minimum(volume * (1.0 / cfg.vol_mu), _VOLUME_MAX),
        ops.minimum(half_spread * (1.0 / ref_spread), _SPREAD_MAX),
    )
    if lob:
        signal, imbalance, last_volume = lob
        out += (
            ops.minimum(ops.maximum(signal, _SIGNAL_MIN), _SIGNAL_MAX),
            imbalance,
            ops.minimum(last_volume * (1.0 / cfg.vol_mu), _LAST_VOLUME_MAX),
        )
    if remaining is not None:
        inverse = ops.where(remaining > 0, cfg.Q0 / (cfg.max_participation * ops.maximum(remaining, 1e-300)), 0.0)
        out += (ops.minimum(remaining * (1.0 / (cfg.T * cfg.vol_mu)), _REMAINING_MAX), inverse)
    return out


def observer(cfg: ExecConfig, ops: Any) -> Callable[..., tuple[Any, ...]]:
    """The observation's columns (``OBS_NAMES``, then ``LOB_NAMES``) from the slice's features
    (``slice_features``) and the order's state: inventory left, the price move since arrival in
    the order's favour (clipped), the last participation. The config's constants are bound once
    (the single env calls it every step)."""
    inv_q0, sign, p0, scale = 1.0 / cfg.Q0, cfg.sign, cfg.p0, cfg.sign / cfg.price_scale
    minimum, maximum = ops.minimum, ops.maximum

    def columns(by_slice: tuple[Any, ...], x: Any, mid_known: Any, perm: Any, last_part: Any) -> tuple[Any, ...]:
        move = minimum(maximum((mid_known - sign * perm - p0) * scale, _MOVE_MIN), _MOVE_MAX)
        return (by_slice[0], x * inv_q0, by_slice[1], by_slice[2], move, last_part, *by_slice[3:])

    def with_pace(by_slice: tuple[Any, ...], x: Any, mid_known: Any, perm: Any, last_part: Any) -> tuple[Any, ...]:
        # the slice's last feature is Q0 / (R_t cap): the required participation replaces it
        required = minimum(x * inv_q0 * by_slice[-1], _REQUIRED_MAX)
        return (*columns(by_slice[:-1], x, mid_known, perm, last_part), required)

    return with_pace if cfg.pace_features else columns


def observe(cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
    """The agents' observations of a batch, ``(B, 6)`` float32, ``(B, 9)`` with the tape/LOB
    features (see the env doc).

    The price feature uses only innovations of slices already finished (``mid_known``), so no
    policy sees the current slice's shock or noise before it trades; after the deadline the
    slice's volume and spread read 0.
    """
    idx = flat_index(market, state)
    live = state.t < cfg.T
    volume, half_spread = market.volume.take(idx), market.half_spread.take(idx)
    if not live.all():
        volume, half_spread = volume * live, half_spread * live
    lob: tuple[Any, ...] = ()
    if cfg.lob_features:
        last = np.maximum(idx - 1, market.row_offsets)  # slice t-1 (slice 0 at the start)
        lob = (market.signal.take(idx), market.imbalance.take(idx), market.volume.take(last))
    remaining = None
    if cfg.pace_features:
        remaining = market.remaining.take(idx)
        if not live.all():
            remaining = remaining * live
    cols = observer(cfg, ARRAY)(
        slice_features(cfg, ARRAY, state.t, volume, half_spread, lob, remaining),
        state.x,
        market.mid_known.take(idx),
        state.perm,
        state.last_part,
    )
    obs = np.empty((len(idx), len(cols)), dtype=np.float32)
    for j, col in enumerate(cols):
        obs[:, j] = col
    return obs


def rewarder(cfg: ExecConfig) -> Callable[[StepResult], Any]:
    """The config's reward of a slice, per episode: minus its cost (realized or schedule, by
    ``cfg.reward``) plus risk term and penalties, in basis points of arrival notional."""
    bps = 1e4 / cfg.notional
    if cfg.reward == "schedule":
        return lambda res: -(res.sched_cost + res.risk + res.penalty) * bps
    return lambda res: -(res.cost + res.risk + res.penalty) * bps


STEP_INFO_KEYS = ("q_exec", "px_exec", "mid", "part", "q_rem", "cost", "schedule_cost_step", "dark_fill")


def step_info_values(res: StepResult) -> tuple[Any, ...]:
    """The per-step info values, in the order of ``STEP_INFO_KEYS``."""
    return res.q, res.px, res.mid, res.part, res.x, res.cost, res.sched_cost, res.dark_fill


def step_info(res: StepResult) -> dict[str, float]:
    """One episode's per-step info (a step of Python floats): ``STEP_INFO_KEYS`` with
    ``step_info_values`` (a literal, for the single env's speed; a test holds the two together)."""
    return {
        "q_exec": res.q,
        "px_exec": res.px,
        "mid": res.mid,
        "part": res.part,
        "q_rem": res.x,
        "cost": res.cost,
        "schedule_cost_step": res.sched_cost,
        "dark_fill": res.dark_fill,
    }


def episode_metrics(cfg: ExecConfig, state: State, ops: Any = ARRAY) -> dict[str, Any]:
    """Per-episode totals (meaningful once done): $ and bps of arrival notional."""
    bps = 1e4 / cfg.notional
    return {
        "shortfall": state.cost * 1.0,
        "shortfall_bps": state.cost * bps,
        "risk_bps": state.risk * bps,
        "penalty_bps": state.penalty * bps,
        "objective_bps": (state.cost + state.risk + state.penalty) * bps,
        "schedule_cost": state.sched_cost * 1.0,
        "schedule_cost_bps": state.sched_cost * bps,
        "schedule_objective_bps": (state.sched_cost + state.risk + state.penalty) * bps,
        "completion": 1.0 - state.forced / cfg.Q0,
        "mean_participation": state.part_sum / ops.maximum(ops.minimum(state.t, cfg.T), 1),
        "slices": state.t * 1,
    }
