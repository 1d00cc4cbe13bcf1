"""The execution model on arrays of episodes: exogenous paths, one slice's trade, the observation.

Everything here acts on a batch of ``B`` episodes (the single Gymnasium env is the ``B = 1`` case),
so the env, the batched env and ``evaluate`` share one implementation of the dynamics.

Per slice ``t`` (``side`` = +1 for a sell, -1 for a buy; ``perm`` the adverse permanent impact
accumulated in $/share):

- the order trades ``q = clip(shares, 0, min(x, max_participation * V_t))``;
- ``perm += kappa * q``;
- the execution mid is ``m = max(0.01, mid_t - side * perm' + noise_t)``, ``perm'`` including this
  slice's own impact when ``own_impact`` (the notebook) and excluding it otherwise (Almgren-Chriss),
  ``mid_t`` the exogenous mid, including slice ``t``'s price innovation when
  ``shock_before_trade`` (the notebook) and only earlier ones otherwise (Almgren-Chriss);
- the execution price is ``px = m - side * (half_spread_t + tmp)`` with temporary impact
  ``tmp = eta * (q / V_t) * m`` (``temp_impact="participation"``) or ``eta * q / dt`` (``"rate"``);
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

from dataclasses import dataclass, fields

import numpy as np

from sb3_exec.config import ExecConfig
from sb3_exec.rng import normals

STREAM_PRICE, STREAM_VOLUME, STREAM_NOISE = 0, 1, 2
MIN_VOLUME = 1e3  # shares; the notebook's floor on a slice's market volume
MIN_PRICE = 0.01  # $/share; the notebook's floor on the mid
OBS_DIM = 6
OBS_NAMES = ("time_left", "inventory_left", "volume", "spread", "price_move", "last_participation")
OBS_LOW = np.array([0, 0, 0, 0, -1000, 0], dtype=np.float32)
OBS_HIGH = np.array([1, 1, 100, 100, 1000, 1], dtype=np.float32)


@dataclass
class Market:
    """Exogenous paths of a batch of episodes, drawn from their seeds: ``(B, T)`` arrays.

    None of it depends on the actions taken (common random numbers across policies).
    """

    seeds: np.ndarray  # (B,) uint64 episode seeds
    volume: np.ndarray  # market volume of slice t (shares)
    half_spread: np.ndarray  # half-spread of slice t ($/share)
    mid: np.ndarray  # exogenous mid at which slice t trades, before impact and noise ($/share)
    mid_known: np.ndarray  # exogenous mid known when slice t is decided ($/share)
    mid_sched: np.ndarray  # predictable part of `mid`: what the schedule cost prices at ($/share)
    noise: np.ndarray  # microstructure noise on slice t's execution mid ($/share)

    def __len__(self) -> int:
        return len(self.seeds)

    def put(self, rows: np.ndarray, other: Market) -> None:
        """Overwrite episodes ``rows`` with ``other``'s (used when a batched env resets some)."""
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)

    def take(self, rows: np.ndarray) -> Market:
        """The sub-batch ``rows``."""
        return Market(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


@dataclass
class State:
    """Per-episode execution state: ``(B,)`` arrays."""

    t: np.ndarray  # next slice to trade (T once the deadline has passed)
    x: np.ndarray  # shares left
    perm: np.ndarray  # adverse permanent impact accumulated ($/share, >= 0)
    cost: np.ndarray  # realized shortfall so far ($)
    sched_cost: np.ndarray  # schedule cost so far ($)
    risk: np.ndarray  # risk term so far ($)
    forced: np.ndarray  # shares force-liquidated at the deadline
    last_part: np.ndarray  # participation q/V of the last slice traded
    part_sum: np.ndarray  # sum of the participations of the slices traded
    done: np.ndarray  # bool: order complete or deadline passed

    def put(self, rows: np.ndarray, other: State) -> None:
        """Overwrite episodes ``rows`` with ``other``'s."""
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


@dataclass
class StepResult:
    """What one slice did, per episode: ``(B,)`` arrays (zeros for episodes already done)."""

    q: np.ndarray  # shares traded in the slice (excluding the deadline liquidation)
    px: np.ndarray  # execution price ($/share)
    mid: np.ndarray  # execution mid ($/share)
    part: np.ndarray  # participation q / V
    cost: np.ndarray  # realized cost of the slice, deadline liquidation included ($)
    sched_cost: np.ndarray  # schedule cost of the slice ($)
    risk: np.ndarray  # risk term of the slice ($)
    terminated: np.ndarray  # bool: the episode ended with this slice


def draw_market(cfg: ExecConfig, seeds: np.ndarray) -> Market:
    """Draw the exogenous paths of one episode per seed (``seeds`` as from ``rng.as_seeds``)."""
    B, T = len(seeds), cfg.T
    shocks = (cfg.p0 * cfg.sigma * np.sqrt(cfg.dt)) * normals(seeds, STREAM_PRICE, T)
    through = np.cumsum(shocks, axis=1)  # innovations of slices 0..t
    before = through - shocks  # innovations of slices 0..t-1
    volume = np.maximum(cfg.vol_mu + cfg.vol_sd * normals(seeds, STREAM_VOLUME, T), MIN_VOLUME)
    noise = cfg.noise_sd * normals(seeds, STREAM_NOISE, T)
    return Market(
        seeds=np.asarray(seeds, dtype=np.uint64),
        volume=volume,
        half_spread=np.full((B, T), cfg.spread_bps * 1e-4 * cfg.p0),
        mid=cfg.p0 + (through if cfg.shock_before_trade else before),
        mid_known=cfg.p0 + before,
        mid_sched=np.full((B, T), cfg.p0),
        noise=noise,
    )


def initial_state(cfg: ExecConfig, n: int) -> State:
    """``n`` fresh episodes: the whole order left, nothing traded."""
    z = np.zeros(n)
    return State(
        t=np.zeros(n, dtype=np.int64), x=np.full(n, cfg.Q0), perm=z.copy(), cost=z.copy(),
        sched_cost=z.copy(), risk=z.copy(), forced=z.copy(), last_part=z.copy(),
        part_sum=z.copy(), done=np.zeros(n, dtype=bool),
    )


def temp_impact(cfg: ExecConfig, q: np.ndarray, volume: np.ndarray, mid: np.ndarray) -> np.ndarray:
    """Temporary impact in $/share of trading ``q`` shares in one slice."""
    if cfg.temp_impact == "rate":
        return cfg.eta * q / cfg.dt
    return cfg.eta * (q / volume) * mid


def slice_view(market: Market, state: State) -> tuple[np.ndarray, np.ndarray]:
    """Row and (clipped) column indices of each episode's current slice."""
    return np.arange(len(state.t)), np.minimum(state.t, market.volume.shape[1] - 1)


def _flat_index(market: Market, state: State) -> np.ndarray:
    """Index of each episode's current slice into the raveled ``(B, T)`` market arrays."""
    T = market.volume.shape[1]
    return np.minimum(state.t, T - 1) + np.arange(0, len(state.t) * T, T)


def step(cfg: ExecConfig, market: Market, state: State, shares: np.ndarray) -> StepResult:
    """Trade one slice of every episode in place; episodes already done do nothing.

    Written for speed (it is the inner loop of training and evaluation): the masks are
    skipped while no episode is done, and the market is read with flat ``take``.

    :param shares: shares each episode asks to trade; clipped to ``[0, min(x, cap)]``
    """
    idx = _flat_index(market, state)
    done = state.done
    all_active = not done.any()
    side, p0 = cfg.sign, cfg.p0
    volume = market.volume.take(idx)
    half_spread = market.half_spread.take(idx)
    q = np.minimum(np.maximum(shares, 0.0), np.minimum(state.x, cfg.max_participation * volume))
    if not all_active:
        q[done] = 0.0

    perm_after = state.perm + cfg.kappa * q
    adverse = side * (perm_after if cfg.own_impact else state.perm)
    mid = market.mid.take(idx)
    mid -= adverse
    mid += market.noise.take(idx)
    np.maximum(mid, MIN_PRICE, out=mid)
    mid_s = market.mid_sched.take(idx)
    mid_s -= adverse
    np.maximum(mid_s, MIN_PRICE, out=mid_s)
    part = q / volume
    if cfg.temp_impact == "rate":
        tmp = (cfg.eta / cfg.dt) * q
        tmp_s = tmp
    else:
        tmp = cfg.eta * part
        tmp_s = tmp * mid_s
        tmp *= mid
    px = mid - side * (half_spread + tmp)
    cost = (side * (p0 - mid) + half_spread + tmp) * q
    sched = (side * (p0 - mid_s) + half_spread + tmp_s) * q

    x = state.x - q
    x[x <= cfg.Q0 * 1e-12] = 0.0  # float dust from x - x/k*k
    t_next = state.t + 1 if all_active else state.t + ~done
    over = t_next >= cfg.T
    deadline = over & (x > 0)  # episodes already done hold nothing
    if deadline.any():
        left = np.where(deadline, x, 0.0)
        pen = cfg.deadline_penalty
        cost += (side * (p0 - mid) + half_spread + pen * temp_impact(cfg, left, volume, mid)) * left
        sched += (side * (p0 - mid_s) + half_spread + pen * temp_impact(cfg, left, volume, mid_s)) * left
        state.forced += left
        x[deadline] = 0.0
    risk = (cfg.risk_aversion * cfg.sigma_dollars**2 * cfg.dt) * x * x  # zero once done
    terminated = (x <= 0) | over
    if all_active:
        state.last_part = part
    else:
        terminated &= ~done
        state.last_part = np.where(done, state.last_part, part)
        px[done] = 0.0
        mid[done] = 0.0

    state.t = t_next
    state.x = x
    state.perm = perm_after
    state.cost += cost
    state.sched_cost += sched
    state.risk += risk
    state.part_sum += part
    state.done = done | terminated
    return StepResult(q=q, px=px, mid=mid, part=part, cost=cost, sched_cost=sched, risk=risk,
                      terminated=terminated)


def observe(cfg: ExecConfig, market: Market, state: State) -> np.ndarray:
    """The agent's normalised features, ``(B, 6)`` float32 (see ``OBS_NAMES`` and the env doc).

    The price feature uses only innovations of slices already finished (``mid_known``), so no
    policy sees the current slice's shock or noise before it trades.
    """
    idx = _flat_index(market, state)
    ref_spread = max(cfg.spread_bps * 1e-4 * cfg.p0, 1e-12)
    scale = cfg.p0 * max(cfg.sigma * np.sqrt(cfg.T * cfg.dt), 1e-4)
    obs = np.empty((len(idx), OBS_DIM), dtype=np.float32)
    obs[:, 0] = (cfg.T - state.t) * (1.0 / cfg.T)
    obs[:, 1] = state.x * (1.0 / cfg.Q0)
    obs[:, 2] = market.volume.take(idx) * (1.0 / cfg.vol_mu)
    obs[:, 3] = market.half_spread.take(idx) * (1.0 / ref_spread)
    obs[:, 4] = (market.mid_known.take(idx) - cfg.sign * state.perm - cfg.p0) * (cfg.sign / scale)
    obs[:, 5] = state.last_part
    ended = state.t >= cfg.T
    if ended.any():  # no slice left to describe
        obs[ended, 2:4] = 0.0
    return np.clip(obs, OBS_LOW, OBS_HIGH, out=obs)


def action_to_shares(
    cfg: ExecConfig, market: Market, state: State, actions: np.ndarray
) -> np.ndarray:
    """Map agents' actions (``(B,)`` ints, or ``(B, 1)`` floats in [-1, 1]) to shares.

    In ``twap_multiple`` and ``continuous`` modes the last slice trades everything left, so the
    deadline is met at the normal impact; in ``participation`` mode (the notebook's) whatever the
    grid leaves is force-liquidated at the deadline.
    """
    rows, t = slice_view(market, state)
    if cfg.action_mode == "participation":
        a = np.asarray(actions, dtype=np.float64).reshape(-1)
        return a / (cfg.action_levels - 1) * cfg.max_participation * market.volume[rows, t]
    if cfg.action_mode == "twap_multiple":
        mult = np.asarray(cfg.twap_multiples)[np.asarray(actions, dtype=np.int64).reshape(-1)]
    else:
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(-1), -1.0, 1.0)
        mult = (a + 1.0) / 2.0 * cfg.twap_multiples[-1]
    slices_left = np.maximum(cfg.T - state.t, 1)
    return np.where(slices_left == 1, state.x, mult * state.x / slices_left)


def reward_bps(cfg: ExecConfig, res: StepResult) -> np.ndarray:
    """Each episode's reward for the slice: minus its cost (realized or schedule, by
    ``cfg.reward``) plus risk term, in basis points of arrival notional."""
    cost = res.sched_cost if cfg.reward == "schedule" else res.cost
    return -(cost + res.risk) * (1e4 / cfg.notional)


def step_info(res: StepResult, state: State, i: int) -> dict[str, float]:
    """Episode ``i``'s per-step info dict (the keys the env documents)."""
    return {
        "q_exec": float(res.q[i]), "px_exec": float(res.px[i]), "mid": float(res.mid[i]),
        "part": float(res.part[i]), "q_rem": float(state.x[i]), "cost": float(res.cost[i]),
        "schedule_cost_step": float(res.sched_cost[i]),
    }


def episode_metrics(cfg: ExecConfig, state: State) -> dict[str, np.ndarray]:
    """Per-episode totals (meaningful once ``state.done``): $ and bps of arrival notional."""
    bps = 1e4 / cfg.notional
    slices = np.maximum(np.minimum(state.t, cfg.T), 1)
    return {
        "shortfall": state.cost.copy(),
        "shortfall_bps": state.cost * bps,
        "risk_bps": state.risk * bps,
        "objective_bps": (state.cost + state.risk) * bps,
        "schedule_cost": state.sched_cost.copy(),
        "schedule_cost_bps": state.sched_cost * bps,
        "schedule_objective_bps": (state.sched_cost + state.risk) * bps,
        "completion": 1.0 - state.forced / cfg.Q0,
        "mean_participation": state.part_sum / slices,
        "slices": state.t.astype(np.int64),
    }
