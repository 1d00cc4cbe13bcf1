"""``ExecutionEnv``: the execution model as a Gymnasium env (the batch-of-one case of the dynamics).

Owns the single env: seeding and resets, the action check, and stepping one episode through the
dynamics on Python floats. Actions become orders through the config's action interface
(``sb3_exec.actions``); ``step_orders`` takes orders in shares directly (what wrappers such as the
residual use, ``sb3_exec.wrappers``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, NoReturn

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_exec import actions, dynamics
from sb3_exec.config import ExecConfig, make_config
from sb3_exec.market import Market, draw_market
from sb3_exec.rng import as_seeds, episode_chain
from sb3_exec.seeding import TRAIN_HIGH, TRAIN_LOW

PREFETCH = 64  # episodes drawn in one batch when resets continue the env's sequence


def observation_space_for(cfg: ExecConfig) -> spaces.Box:
    """The observation space (see ``dynamics.OBS_NAMES``; a wrapper may add features)."""
    low, high = dynamics.obs_bounds(cfg)
    return spaces.Box(low, high, dtype=np.float32)


class ExecutionEnv(gym.Env):
    """Work a parent order over ``T`` slices, paying spread, impact and price risk.

    ## Description
    A sell (or buy) program of ``Q0`` shares must be completed within ``T`` slices. Each slice
    the agent chooses how much to trade; the model (``sb3_exec.dynamics``) charges the half-spread,
    temporary impact and permanent impact and moves the price by a random innovation. Presets
    (``sb3_exec.PRESETS``): ``seed`` (the original notebook's model), ``ac2000`` and ``ac60`` (the
    exact Almgren-Chriss model), ``liquidity`` (stochastic U-shaped volume and spreads) and
    ``lob`` (``liquidity`` with an order-flow signal, tape/LOB features and a dark venue).

    ## Action Space (``action_mode``; the interfaces are defined once, in ``sb3_exec.actions``)
    | mode | space | meaning |
    |---|---|---|
    | ``participation`` | ``Discrete(action_levels)`` | ``a/(L-1) * max_participation`` of the slice's volume (the notebook's grid); what is left at the deadline is force-liquidated |
    | ``twap_multiple`` (default) | ``Discrete(len(twap_multiples))`` | ``twap_multiples[a] * x / slices_left``; the last slice trades everything left |
    | ``continuous`` | ``Box(-1, 1, (1,))`` | multiple ``(a+1)/2 * max(twap_multiples)`` of ``x / slices_left``; the last slice trades everything left |
    | ``fraction`` | ``Box(-1, 1, (1,))`` | fraction ``(a+1)/2`` of the inventory left ``x``; the last slice trades everything left |
    | ``fraction_grid`` | ``Discrete(len(fraction_grid))`` | fraction ``fraction_grid[a]`` of ``x`` (0 and geometric steps from 1% to 100%); the last slice trades everything left |
    | ``residual`` | ``Box(-1, 1, (1,))`` | a multiplier ``1 + (r-1) a`` (``a >= 0``) or ``1 / (1 + (r-1) |a|)`` (``a < 0``), ``r = residual_range``, on a base policy's trade for the slice (``residual_base``: the adaptive MPC by default, or any causal baseline; ``a = 0`` is the base). A wrapper: ``gymnasium.make`` builds it (``sb3_exec.wrappers.ResidualWrapper``); the bare env refuses to step |
    | ``participation_rate`` | ``Box(-1, 1, (1,))`` | participation ``(a+1)/2 * max_participation`` of the slice's volume; what is left at the deadline is force-liquidated |
    | ``pace_multiple`` | ``Discrete(len(twap_multiples))`` | ``twap_multiples[a] * x * V_t / R_t``, ``R_t`` the expected volume of the slices left given ``V_t`` (``market.remaining_volume``); needs ``pace_features`` |
    | ``pace_continuous`` | ``Box(-1, 1, (1,))`` | the same with the multiple ``(a+1)/2 * max(twap_multiples)`` |

    Every mode is capped by ``max_participation`` of the slice's market volume. With a dark venue
    (``dark_share > 0``) the action also sizes a dark order, a fraction of the inventory left:
    discrete modes become ``Discrete(n_lit * len(dark_levels))`` with ``a = lit * len(dark_levels)
    + dark``, and the box modes ``Box(-1, 1, (2,))`` with the dark fraction ``(a[1]+1)/2``.

    ## Observation Space: ``Box(6,)`` float32 (``Box(9,)`` with the tape/LOB features; the pace features add 2, a residual 1 or 2)
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

    With ``pace_features=True`` two pace features follow:
    | next | the expected volume of the slices left, this one included, ``R_t / (T vol_mu)`` | [0, 100], 0 after the deadline |
    | next | the participation the inventory left needs on it, ``x / (R_t max_participation)`` (1: at the cap) | [0, 100], 0 after the deadline |

    With ``action_mode="residual"`` the base's order for the slice as a fraction of ``x`` follows
    last (``policies.RESIDUAL_NAMES``: the lit order, then the dark order with a dark venue), in
    [0, 1].

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
    field, including ``action_mode``, ``reward``, ``residual_base``, ``side`` and the notebook's
    ``buy``. The single env draws the markets of the episodes that continue its sequence in
    batches of ``PREFETCH`` (each episode's numbers depend on its seed alone).
    """

    metadata = {"render_modes": [], "render_fps": 1}  # noqa: RUF012 (gymnasium.Env declares it a plain class attribute)

    def __init__(self, preset: str | ExecConfig = "seed", render_mode: str | None = None, **overrides: Any) -> None:
        self.cfg = make_config(preset, **overrides)
        self.preset = preset if isinstance(preset, str) else None  # the preset's name, if one
        self.render_mode = render_mode  # nothing to render; accepted for Gymnasium's API
        self.interface = actions.interface(self.cfg)
        self.action_space = actions.action_space(self.cfg)
        self.observation_space = observation_space_for(self.cfg)
        # None until the first reset; typed as a State so that the step pays for no assert
        self._state: dynamics.State = None  # type: ignore[assignment]
        self._seed: int | None = None  # the current episode's seed
        self._queue: deque[tuple[Any, ...]] = deque()  # episodes drawn ahead: see _draw
        self._episode_market: Market | None = None
        self._shares: list[float] | None = None  # V_t / R_t of the episode (pace interfaces)
        self._discrete = isinstance(self.action_space, spaces.Discrete)
        self._n_actions = (
            int(self.action_space.n) if isinstance(self.action_space, spaces.Discrete) else 0
        )  # a plain int is checked inline
        self._needs_base = self.interface.needs_base
        self._split = self.cfg.dark_venue or self.interface.needs_share  # see step
        # the model's functions with the config bound once (a step is a few microseconds)
        self._trade = dynamics.kernel(self.cfg, dynamics.SCALAR)
        self._columns = dynamics.observer(self.cfg, dynamics.SCALAR)
        self._lit = self.interface.lit
        self._reward = dynamics.rewarder(self.cfg)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; its market is drawn from ``seed`` (or continues the env's sequence)."""
        super().reset(seed=seed)
        if seed is not None:
            self._queue.clear()
            self._draw(as_seeds([seed]))
        elif self._seed is None:
            self._draw(as_seeds([int(self.np_random.integers(TRAIN_LOW, TRAIN_HIGH, dtype=np.uint64))]))
        elif not self._queue:  # the sequence goes on: draw the next PREFETCH episodes in one batch
            self._draw(episode_chain(self._seed, PREFETCH))
        self._seed, self._batch, self._row, self._path, self._slices, self._shares = self._queue.popleft()
        self._episode_market = None  # taken from the batch when a policy asks (batch_view)
        self._state = dynamics.initial_state(self.cfg)
        return self._observation(), {"seed": self._seed}

    def _draw(self, keys: np.ndarray) -> None:
        """Draw the markets of episodes ``keys`` in one batch and queue them as Python floats: the
        paths, and the features that depend on the slice alone (``T + 1`` rows, the last after
        the deadline), so that a step does the state's part only. Each episode's numbers depend
        on its seed alone, so drawing ahead changes none of them."""
        cfg, market = self.cfg, draw_market(self.cfg, keys)
        n, T = len(keys), cfg.T
        clipped = np.minimum(np.arange(T + 1), T - 1)
        after = np.zeros((n, 1))  # volume and spread read 0 after the deadline
        lob: tuple[Any, ...] = ()
        if cfg.lob_features:
            lob = (
                market.signal[:, clipped],
                market.imbalance[:, clipped],
                market.volume[:, np.maximum(clipped - 1, 0)],
            )
        by_slice = dynamics.slice_features(
            cfg,
            dynamics.ARRAY,
            np.arange(T + 1)[None, :],
            np.hstack([market.volume, after]),
            np.hstack([market.half_spread, after]),
            lob,
            np.hstack([market.remaining, after]) if cfg.pace_features else None,
        )
        table = np.stack([np.broadcast_to(c, (n, T + 1)) for c in by_slice], axis=-1).tolist()
        known = np.hstack([market.mid_known, market.mid_known[:, -1:]])  # T + 1: the last slice's again
        paths = [self._as_lists(getattr(market, name)) for name in dynamics.MARKET_ROW] + [known.tolist()]
        # the slice's share of the expected remaining volume, for the pace interfaces
        shares = (market.volume / market.remaining).tolist() if self.interface.needs_share else [None] * n
        for i, key in enumerate(keys.tolist()):
            self._queue.append((key, market, i, tuple(p[i] for p in paths), table[i], shares[i]))

    @staticmethod
    def _as_lists(paths: np.ndarray) -> list[list[float]]:
        """Each row as a list of floats; rows that are one constant (a series switched off: no
        signal's drift, no dark venue) share one list (read only), converted once."""
        first = paths[:, :1]
        if (paths == first).all() and (first == first[0, 0]).all():
            return [paths[0].tolist()] * len(paths)
        return paths.tolist()

    def _observation(self) -> np.ndarray:
        s = self._state
        return np.array(
            self._columns(self._slices[s.t], s.x, self._path[6][s.t], s.perm, s.last_part), dtype=np.float32
        )

    def batch_view(self) -> tuple[Market, dynamics.State]:
        """The current episode as a batch of one (``Market`` and a ``State`` copy of arrays), as
        the policies of ``sb3_exec.baselines`` read it."""
        s = self._state
        if s is None:
            raise RuntimeError("call reset() first")
        batch = dynamics.initial_state(self.cfg, 1)
        for name in (
            "t",
            "x",
            "perm",
            "cost",
            "sched_cost",
            "risk",
            "penalty",
            "forced",
            "last_part",
            "part_sum",
            "done",
        ):
            getattr(batch, name)[0] = getattr(s, name)
        if self._episode_market is None:
            self._episode_market = self._batch.take(np.array([self._row]))
        return self._episode_market, batch

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade one slice. Raises ``ValueError`` for an action outside the action space."""
        s = self._state
        if s is None or s.done or self._needs_base:
            self._refuse()
        cfg = self.cfg
        a = action if action.__class__ is int and 0 <= action < self._n_actions else self._check_action(action)
        if self._split:  # a dark venue or a pace interface: the orders as Python floats
            lit, dark_action = actions.split(cfg, a)
            dark_order = (
                0.0 if dark_action is None else float(actions.dark_order(cfg, dynamics.SCALAR, dark_action, s.x))
            )
            share = 0.0 if self._shares is None else self._shares[s.t]
            return self._advance(
                float(self._lit(cfg, dynamics.SCALAR, lit, s.t, s.x, self._path[0][s.t], 0.0, share)), dark_order
            )
        return self._advance(self._lit(cfg, dynamics.SCALAR, a, s.t, s.x, self._path[0][s.t], 0.0), 0.0)

    def _refuse(self) -> NoReturn:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self._state.done:
            raise RuntimeError("the episode has ended; call reset()")
        raise RuntimeError(
            f"action_mode: {self.cfg.action_mode!r} acts on a base policy's order; build the env "
            f"with gymnasium.make('sb3_exec/Execution-v0', action_mode={self.cfg.action_mode!r}, "
            f"...) or sb3_exec.wrappers.ResidualWrapper"
        )

    def step_orders(
        self, shares: float, dark_order: float = 0.0
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade one slice with orders in shares (``shares`` lit, ``dark_order`` in the dark
        venue): what ``step`` does after the action interface."""
        s = self._state
        if s is None or s.done:
            self._refuse()
        return self._advance(float(shares), float(dark_order))

    def _advance(self, shares: float, dark_order: float) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """``step_orders`` with the orders already Python floats (so are the step's info values)."""
        s = self._state  # step and step_orders refuse a step before reset
        t = s.t
        volume, half_spread, mid, noise, mid_sched, dark, known = self._path  # see MARKET_ROW
        res = self._trade(
            shares,
            dark_order,
            s.x,
            s.perm,
            s.last_part,
            t + 1,
            volume[t],
            half_spread[t],
            mid[t],
            noise[t],
            mid_sched[t],
            dark[t],
        )
        s.t, s.last_part, s.done = t + 1, res.part, res.terminated
        dynamics.accumulate(s, res)
        info: dict[str, Any] = dynamics.step_info(res)  # Python floats: the orders are floats
        if res.terminated:
            info.update(dynamics.episode_metrics(self.cfg, s, dynamics.SCALAR))
        # ``_observation()`` written out: a method call is 2% of a step, and the step's speed is
        # held to the notebook's loop (experiments.benchmark)
        obs = np.array(self._columns(self._slices[t + 1], s.x, known[t + 1], s.perm, res.part), dtype=np.float32)
        return obs, self._reward(res), res.terminated, False, info

    def _check_action(self, action: Any) -> Any:
        """The action as an int (discrete) or float (continuous), or ``ValueError``."""
        space: Any = self.action_space  # Discrete or Box
        if self._discrete:
            if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
                a: int | None = int(action)
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
