"""``ExecutionEnv``: the execution model as a Gymnasium env (the batch-of-one case of the dynamics).

Owns the single env: seeding and resets, the action check, and stepping one episode through the
dynamics on Python floats. Actions become orders through the config's action interface
(``sb3_exec.actions``); ``step_orders`` takes orders in shares directly (what wrappers such as the
residual use, ``sb3_exec.wrappers``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_exec import actions, dynamics
from sb3_exec.config import ExecConfig, make_config
from sb3_exec.market import Market, draw_market
from sb3_exec.rng import as_seeds, next_episode_seeds
from sb3_exec.seeding import TRAIN_HIGH, TRAIN_LOW


def observation_space_for(cfg: ExecConfig) -> spaces.Box:
    """The observation space (see ``dynamics.OBS_NAMES``; a wrapper may add features)."""
    low, high = dynamics.obs_bounds(cfg)
    return spaces.Box(low, high, dtype=np.float32)


class ExecutionEnv(gym.Env):
    """Work a parent order over ``T`` slices, paying spread, impact and price risk.

    ## Description
    A sell (or buy) program of ``Q0`` shares must be completed within ``T`` slices. Each slice
    the agent chooses how much to trade; the model (``sb3_exec.dynamics``) charges the half-spread,
    temporary impact and permanent impact and moves the price by a random innovation. Presets:
    ``seed`` (the original notebook's model), ``ac2000`` (the exact Almgren-Chriss model) and
    ``liquidity`` (stochastic U-shaped volume and spreads).

    ## Action Space (``action_mode``)
    | mode | space | meaning |
    |---|---|---|
    | ``participation`` | ``Discrete(action_levels)`` | ``a/(L-1) * max_participation`` of the slice's volume (the notebook's grid); what is left at the deadline is force-liquidated |
    | ``twap_multiple`` (default) | ``Discrete(len(twap_multiples))`` | ``twap_multiples[a] * x / slices_left``; the last slice trades everything left |
    | ``continuous`` | ``Box(-1, 1, (1,))`` | multiple ``(a+1)/2 * max(twap_multiples)`` of ``x / slices_left``; the last slice trades everything left |
    | ``fraction`` | ``Box(-1, 1, (1,))`` | fraction ``(a+1)/2`` of the inventory left ``x``; the last slice trades everything left |
    | ``fraction_grid`` | ``Discrete(len(fraction_grid))`` | fraction ``fraction_grid[a]`` of ``x`` (0 and geometric steps from 1% to 100%); the last slice trades everything left |
    | ``residual`` | ``Box(-1, 1, (1,))`` | a multiplier ``1 + (r-1) a`` (``a >= 0``) or ``1 / (1 + (r-1) |a|)`` (``a < 0``), ``r = residual_range``, on the adaptive MPC's trade for the slice (``baselines.mpc_orders``; ``a = 0`` is the MPC, which may leave part of the last slice to the deadline liquidation when that is cheaper) |

    Every mode is capped by ``max_participation`` of the slice's market volume. With a dark venue
    (``dark_share > 0``) the action also sizes a dark order, a fraction of the inventory left:
    discrete modes become ``Discrete(n_lit * len(dark_levels))`` with ``a = lit * len(dark_levels)
    + dark``, and the box modes ``Box(-1, 1, (2,))`` with the dark fraction ``(a[1]+1)/2``.

    ## Observation Space: ``Box(6,)`` float32
    | index | feature | unit / bounds |
    |---|---|---|
    | 0 | time left ``(T - t) / T`` | [0, 1] |
    | 1 | inventory left ``x / Q0`` | [0, 1] |
    | 2 | this slice's market volume ``V_t / vol_mu`` | [0, 100], 0 after the deadline |
    | 3 | this slice's half-spread over the config's ``spread_bps`` | [0, 100], 0 after the deadline |
    | 4 | price move since arrival in the order's favour (up for a sell), over the horizon's volatility ``p0 * sigma * sqrt(T dt)`` (at least 1 bp of ``p0``); only innovations of finished slices | [-1000, 1000] |
    | 5 | last slice's participation ``q / V`` | [0, 1] |

    With the order-flow signal on (``signal_strength > 0``) three tape/LOB features follow:
    | 6 | the order-flow signal ``s_t`` (it shifts this slice's price move by ``signal_strength * s_t`` slice volatilities) | [-10, 10] |
    | 7 | depth imbalance ``tanh(0.5 s_t + 0.5 u_t)``, a noisy proxy of the signal | [-1, 1] |
    | 8 | the last slice's volume over ``vol_mu`` | [0, 100] |

    With ``action_mode="residual"`` the MPC's order for the slice as a fraction of ``x`` follows
    last (``mpc_fraction``, then ``mpc_dark_fraction`` with a dark venue), in [0, 1].

    Features are clipped to these bounds (reached only by extreme configs).

    ## Rewards
    ``reward="shortfall"`` (default): minus the slice's implementation shortfall
    ``side * (p0 - px) * q`` (the deadline liquidation included on the last step) plus the risk
    term ``risk_aversion * (p0 sigma)^2 dt x_after^2`` and the optional participation penalties
    (``aggressiveness_penalty``, ``participation_change_penalty``), in bps of ``Q0 * p0``. An
    episode's rewards sum to ``-objective_bps``.

    ``reward="schedule"``: minus the slice's *schedule cost* plus the risk term, in bps; the sum is
    ``-schedule_objective_bps``. The schedule cost prices the same trades with the unpredictable
    price innovations set to zero. The removed part is ``sum_t x_held_t * innovation_t`` (shares
    held when an innovation arrives), and for any policy that does not see the future those
    holdings are fixed before the innovation is drawn, so it has mean zero: the expected return,
    hence the optimal policy, is unchanged, with far less noise. ``reward`` changes training only;
    ``sb3_exec.evaluate`` always reports both. Where impact is proportional to the price (the
    ``seed`` preset's temporary impact ``eta * (q/V) * mid``) the two differ in expectation by a
    second-order term, temporary impact times price move. Measured on ``seed`` over 100,000
    episodes it is below 1e-6 bps in mean for every baseline and for a price-reactive policy
    (7e-7 bps, the largest), and below 1e-3 bps on any single episode.

    ## Starting State
    The whole order left at the arrival price ``p0``; the episode's exogenous randomness (price
    shocks, volumes, noise) is drawn at ``reset(seed=...)`` from that seed alone and does not
    depend on the actions, so two policies on one seed see the same market (common random numbers).
    A reset without a seed continues the sequence from the previous episode's seed
    (``rng.next_episode_seeds``), or draws from the env's ``np_random`` for the very first.

    ## Episode End
    ``terminated=True`` once the order is complete or the last slice (with any deadline
    liquidation) has traded. There is no truncation.

    ## Info
    Every step: ``q_exec`` (shares), ``px_exec`` ($/share), ``mid`` ($/share), ``part``
    (``q/V``), ``q_rem`` (shares left), ``cost`` ($, this slice), ``schedule_cost_step`` ($),
    ``dark_fill`` (shares filled in the dark venue).
    Last step also: ``shortfall`` ($), ``shortfall_bps``, ``risk_bps``, ``penalty_bps`` (the
    participation penalties, when their weights are set), ``objective_bps``,
    ``schedule_cost`` ($), ``schedule_cost_bps``, ``schedule_objective_bps``, ``completion``
    (share of the order filled before the deadline liquidation), ``mean_participation``.
    ``reset`` returns ``{"seed": episode_seed}``.

    ## Arguments
    ``gymnasium.make("sb3_exec/Execution-v0", preset="ac2000", **overrides)``: ``preset`` is a
    name in ``sb3_exec.PRESETS`` (or an ``ExecConfig``); ``overrides`` are any ``ExecConfig``
    field, including ``action_mode``, ``reward``, ``side`` and the notebook's ``buy``.
    """

    metadata = {"render_modes": [], "render_fps": 1}

    def __init__(self, preset: str | ExecConfig = "seed", render_mode: str | None = None,
                 **overrides: Any) -> None:
        self.cfg = make_config(preset, **overrides)
        self.preset = preset if isinstance(preset, str) else None  # the preset's name, if one
        self.render_mode = render_mode  # nothing to render; accepted for Gymnasium's API
        self.interface = actions.interface(self.cfg)
        self.action_space = actions.action_space(self.cfg)
        self.observation_space = observation_space_for(self.cfg)
        self._market: Market | None = None
        self._state: dynamics.State | None = None
        self._path: tuple[list[float], ...] = ()
        self._discrete = isinstance(self.action_space, spaces.Discrete)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; its market is drawn from ``seed`` (or continues the env's sequence)."""
        super().reset(seed=seed)
        if seed is not None:
            keys = as_seeds([seed])
        elif self._market is not None:
            keys = next_episode_seeds(self._market.seeds)
        else:
            keys = as_seeds([int(self.np_random.integers(TRAIN_LOW, TRAIN_HIGH, dtype=np.uint64))])
        self._market = draw_market(self.cfg, keys)
        m = self._market
        # one episode runs on Python floats: the same kernel as the batch, without numpy overhead
        self._path = tuple(a[0].tolist() for a in (m.volume, m.half_spread, m.mid, m.noise,
                                                   m.mid_sched, m.mid_known, m.signal, m.imbalance,
                                                   m.dark))
        self._state = dynamics.initial_state(self.cfg)
        return self._observation(), {"seed": int(keys[0])}

    def _observation(self) -> np.ndarray:
        s, cfg = self._state, self.cfg
        volume, half_spread, _, _, _, mid_known, signal, imbalance, _ = self._path
        t = min(s.t, cfg.T - 1)
        live = s.t < cfg.T
        lob = (signal[t], imbalance[t], volume[max(t - 1, 0)]) if cfg.lob_features else ()
        feats = dynamics.features(cfg, dynamics.SCALAR, s.t, s.x, volume[t] if live else 0.0,
                                  half_spread[t] if live else 0.0, mid_known[t], s.perm, s.last_part,
                                  lob)
        return np.array(feats, dtype=np.float32)

    def batch_view(self) -> tuple[Market, dynamics.State]:
        """The current episode as a batch of one (``Market`` and a ``State`` copy of arrays), as
        the policies of ``sb3_exec.baselines`` read it."""
        s = self._state
        if s is None or self._market is None:
            raise RuntimeError("call reset() first")
        batch = dynamics.initial_state(self.cfg, 1)
        for name in ("t", "x", "perm", "cost", "sched_cost", "risk", "penalty", "forced",
                     "last_part", "part_sum", "done"):
            getattr(batch, name)[0] = getattr(s, name)
        return self._market, batch

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade one slice. Raises ``ValueError`` for an action outside the action space."""
        s = self._state
        if s is None:
            raise RuntimeError("call reset() before step()")
        if self.interface.needs_base:
            raise RuntimeError(
                f"action_mode: {self.cfg.action_mode!r} acts on a base policy's order; build the env "
                f"with gymnasium.make('sb3_exec/Execution-v0', action_mode={self.cfg.action_mode!r}, "
                f"...) or sb3_exec.wrappers.ResidualWrapper"
            )
        cfg, a = self.cfg, self._check_action(action)
        lit, dark_action = actions.split(cfg, a) if cfg.dark_venue else (a, None)
        shares = self.interface.lit(cfg, dynamics.SCALAR, lit, s.t, s.x, self._path[0][min(s.t, cfg.T - 1)], 0.0)
        dark_order = 0.0 if dark_action is None else actions.dark_order(cfg, dynamics.SCALAR, dark_action, s.x)
        return self.step_orders(shares, dark_order)

    def step_orders(self, shares: float, dark_order: float = 0.0) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade one slice with orders in shares (``shares`` lit, ``dark_order`` in the dark
        venue): what ``step`` does after the action interface."""
        s = self._state
        if s is None:
            raise RuntimeError("call reset() before step()")
        if s.done:
            raise RuntimeError("the episode has ended; call reset()")
        cfg, t = self.cfg, s.t
        volume, half_spread, mid, noise, mid_sched, *_, dark = self._path
        res = dynamics.trade_slice(cfg, dynamics.SCALAR, shares, s.x, s.perm, t + 1, volume[t],
                                   half_spread[t], mid[t], noise[t], mid_sched[t], s.last_part,
                                   dark_order, dark[t])
        s.t, s.last_part, s.done = t + 1, res.part, res.terminated
        dynamics.accumulate(s, res)
        info: dict[str, Any] = dict(zip(dynamics.STEP_INFO_KEYS, map(float, dynamics.step_info_values(res))))
        if res.terminated:
            info.update(dynamics.episode_metrics(cfg, s, dynamics.SCALAR))
        return self._observation(), float(dynamics.reward_bps(cfg, res)), bool(res.terminated), False, info

    def _check_action(self, action: Any) -> Any:
        """The action as an int (discrete) or float (continuous), or ``ValueError``."""
        space = self.action_space
        if self._discrete:
            if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
                a = int(action)
            else:
                arr = np.asarray(action)
                a = int(arr.reshape(())) if arr.size == 1 and arr.dtype.kind in "iu" else None
            if a is not None and 0 <= a < space.n:
                return a
        else:
            arr = np.asarray(action, dtype=np.float32).reshape(-1)
            if arr.size == space.shape[0] and np.isfinite(arr).all() and np.abs(arr).max() <= 1.0:
                return float(arr[0]) if arr.size == 1 else arr.astype(np.float64)
        raise ValueError(f"action: {action!r} is outside the action space {space}")
