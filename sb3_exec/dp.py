"""The causal optimum by dynamic programming: the best any policy that does not see the future can do.

Owns the backward induction ``J_t(x, z, y) = min_q [cost_t(q) + risk(x - q) + E J_{t+1}(x - q, z', y')]``
over the slice ``t``, the inventory ``x`` and the exogenous Markov states of the market that a
policy observes: the volume state ``z`` and the spread state ``y`` (recovered exactly from the
slice's observed volume and spread and the known profile). The price carries no information about
liquidity, so on the ``liquidity`` and Almgren-Chriss presets this is the whole state, and the
policy that solves it is the causal optimum of the schedule objective.

- Inventory on a uniform grid over ``[0, Q0]``; ``z`` and ``y`` on grids of ``+-span`` stationary
  SD (one point where the state is constant); the expectation over the next innovations by
  Gauss-Hermite quadrature, with local cubic (Keys) interpolation in ``(z, y)``.
- Without a dark venue each trade is the minimiser of its 1-D convex problem: bisection on the
  first-order condition (to ``Grid.bisection`` halvings), the continuation's slope interpolated
  linearly between the grid's midpoints (exact for a quadratic value, so the Almgren-Chriss
  closed form is reproduced). With one, see below.
- The participation cap and the deadline liquidation as the env applies them (``costs``).
- At run time the policy uses the episode's actual volume and spread for the slice's cost and
  interpolates only the continuation value.

On ``lob``-like configs two things join. The observed order-flow signal ``s`` is a third Markov
state: slice ``t``'s predictable drift ``d_t = signal_strength * p0 sigma sqrt(dt) * s_t`` moves
the price of every later trade, which (summing by parts) costs ``-side * d_t * x_after`` per slice,
linear in the shares held after it. The dark order is a second control, from a few multiples of
the slice's expected dark liquidity and "post everything" (``Grid.dark_orders``); its fill, the
lognormal hidden liquidity capped by the order and the inventory, is averaged over bins that
narrow towards the upper tail (``dark_nodes``), and for each candidate the lit trade minimises
the expected cost (the lit trade takes what the fill leaves, so the cost has a kink at each
node's leftover room: a scan brackets the minimum, bisection on the expected first-order
condition finds it, ``_scan_and_bisect``). The aggressiveness penalty is in the lit
trade's cost. Its default grid (``LOB_GRID``) is converged: no refinement of a grid field moves
the simulated mean by 0.05 bps (``python -m experiments.dp_grid``; ``results/dp_grid``). Being
a causal policy, its simulated cost bounds the causal optimum's from above.

The solution is cached on disk, keyed by the model's fields and the grid
(``$SB3_EXEC_CACHE``, default ``~/.cache/sb3_exec``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sb3_exec.analytic import analytic_optimum_bps
from sb3_exec.config import INTERFACE_FIELDS, ExecConfig
from sb3_exec.costs import aggressiveness_coefficient, deadline_coefficients, schedule_cost_coefficients
from sb3_exec.market import MIN_VOLUME, stationary_var, volume_profile
from sb3_exec.planning import unsupported as planner_unsupported

VERSION = 4  # bump when the solver's numbers change: old cache files are then ignored
# ``Grid``'s default dark orders, in multiples of the slice's expected dark liquidity (and
# "everything", the whole inventory); ``LOB_GRID`` needs fewer (``results/dp_grid``)
DARK_MULTIPLES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


@dataclass(frozen=True)
class Grid:
    """Grid sizes of the DP (defaults converged on ``liquidity``: see the tests).

    :param inventory: points of the inventory grid on ``[0, Q0]`` (>= 3)
    :param volume: points of the volume state (where it moves)
    :param spread: points of the spread state (where it moves)
    :param signal: points of the order-flow signal's state (where there is one)
    :param quadrature: Gauss-Hermite nodes per innovation
    :param dark: nodes of the dark venue's hidden liquidity (where there is one; ``dark_nodes``)
    :param span: half-width of the state grids in stationary SDs
    :param bisection: bisection steps of each 1-D minimisation
    :param scan: points of the scan that brackets each lit trade before bisection, with a dark
        venue (its expected cost is convex only between kinks: ``_scan_and_bisect``)
    :param dark_orders: the dark orders to choose from, in multiples of the slice's expected dark
        liquidity (the whole inventory is always a further choice)
    """

    inventory: int = 201
    volume: int = 21
    spread: int = 21
    signal: int = 9
    quadrature: int = 9
    dark: int = 10
    span: float = 4.5
    bisection: int = 50
    scan: int = 9
    dark_orders: tuple[float, ...] = DARK_MULTIPLES

    def __post_init__(self) -> None:
        for name, low in (
            ("inventory", 3),
            ("volume", 1),
            ("spread", 1),
            ("signal", 1),
            ("quadrature", 1),
            ("dark", 1),
            ("bisection", 1),
            ("scan", 2),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.span, (int, float)) and self.span > 0):
            raise ValueError(f"span must be a positive number, got {self.span!r}")
        if not (self.dark_orders and all(isinstance(m, (int, float)) and m >= 0 for m in self.dark_orders)):
            raise ValueError(f"dark_orders must be non-negative multiples, got {self.dark_orders!r}")


# converged on lob (``python -m experiments.dp_grid --preset lob``: no refinement of a field moves
# the simulated mean by 0.05 bps); one to two minutes on one core
LOB_GRID = Grid(
    inventory=41,
    volume=13,
    spread=7,
    signal=9,
    quadrature=7,
    dark=8,
    bisection=12,
    scan=9,
    dark_orders=(0.0, 0.5, 1.0, 2.0, 4.0),
)


def default_grid(cfg: ExecConfig) -> Grid:
    """The default grid of a config: ``Grid()``, or ``LOB_GRID`` where the signal or the dark
    venue make the problem larger; each converged on its preset (``liquidity``, ``lob``: the
    tests and ``python -m experiments.dp_grid``)."""
    return LOB_GRID if cfg.signal_strength > 0 or cfg.dark_venue else Grid()


def unsupported(cfg: ExecConfig) -> str | None:
    """Why the DP cannot represent a config (a message naming the field), or None."""
    reason = planner_unsupported(cfg)
    if reason is not None:
        return reason
    if cfg.participation_change_penalty:
        return (
            "participation_change_penalty: it couples the slices through the last participation, "
            "which the DP's state (t, x, volume, spread) does not hold"
        )
    if cfg.signal_strength > 0 and cfg.shock_before_trade:
        return (
            "shock_before_trade: with the order-flow signal the DP prices a slice's drift into "
            "later trades only (shock_before_trade=False, as in lob)"
        )
    if cfg.signal_strength > 0 and cfg.signal_phi >= 1:
        return "signal_phi: the signal must be stationary (|phi| < 1) for the DP's grid"
    return None


def deadline_option(cfg: ExecConfig) -> bool:
    """Whether the optimum may leave part of the last slice to the deadline liquidation (at
    ``deadline_penalty`` times the impact, one more trade). Not in the exact Almgren-Chriss model,
    whose problem ends with nothing held (``x_N = 0``), as every policy's but the participation
    grid's and the residual's last slice does; elsewhere, as the oracle and the MPC do."""
    return analytic_optimum_bps(cfg) is None


def keys_weights(nodes: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local cubic (Keys, a = -1/2) interpolation on a uniform grid: for each point, the indices
    ``(P, 4)`` of its four nodes (clamped at the edges) and their weights ``(P, 4)``. Points
    outside the grid are clamped to it; a one-node grid gives weight 1."""
    points = np.asarray(points, dtype=np.float64)
    n = len(nodes)
    if n == 1:
        return np.zeros((*points.shape, 4), dtype=np.int64), np.concatenate(
            [np.ones((*points.shape, 1)), np.zeros((*points.shape, 3))], axis=-1
        )
    h = nodes[1] - nodes[0]
    pos = (np.clip(points, nodes[0], nodes[-1]) - nodes[0]) / h
    k = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    u = pos - k
    u2, u3 = u * u, u * u * u
    w = np.stack(
        [(-u3 + 2 * u2 - u) / 2, (3 * u3 - 5 * u2 + 2) / 2, (-3 * u3 + 4 * u2 + u) / 2, (u3 - u2) / 2], axis=-1
    )
    idx = np.clip(k[..., None] + np.arange(-1, 3), 0, n - 1)
    return idx, w


@dataclass(frozen=True)
class Factor:
    """One exogenous Markov state of the market (volume or spread) as the DP sees it.

    ``z_{t+1} = phi z_t + innov_sd eps``; ``observable(t, z)`` maps the state to the slice's
    volume or half-spread and ``state(t, value)`` inverts it."""

    nodes: np.ndarray
    phi: float
    innov_sd: float
    observable: Callable[[int, np.ndarray], np.ndarray]
    state: Callable[[int, np.ndarray], np.ndarray]

    def expectation(self, quadrature: int) -> np.ndarray:
        """``A`` with ``E[f(z') | z_i] ~ sum_j A[i, j] f(z_j)`` (Gauss-Hermite over the innovation)."""
        n = len(self.nodes)
        if n == 1:
            return np.ones((1, 1))
        eps, w = np.polynomial.hermite_e.hermegauss(quadrature)
        w = w / w.sum()
        nxt = self.phi * self.nodes[:, None] + self.innov_sd * eps[None, :]  # (n, m)
        idx, weights = keys_weights(self.nodes, nxt)
        out = np.zeros((n, n))
        rows = np.broadcast_to(np.arange(n)[:, None, None], idx.shape)
        np.add.at(out, (rows, idx), weights * w[None, :, None])
        return out


def volume_factor(cfg: ExecConfig, grid: Grid) -> Factor:
    """The volume state: the log-AR(1) state ``z``, or the notebook's i.i.d. normal draw."""
    mean = cfg.vol_mu * volume_profile(cfg)
    if cfg.volume_model == "log_ar1" and cfg.volume_innov_sd > 0:
        s2 = stationary_var(cfg.volume_phi, cfg.volume_innov_sd)
        nodes = np.linspace(-grid.span, grid.span, grid.volume) * np.sqrt(s2) if grid.volume > 1 else np.zeros(1)
        return Factor(
            nodes,
            cfg.volume_phi,
            cfg.volume_innov_sd,
            lambda t, z: np.maximum(mean[t] * np.exp(z - 0.5 * s2), MIN_VOLUME),
            lambda t, v: np.log(v / mean[t]) + 0.5 * s2,
        )
    if cfg.volume_model == "normal" and cfg.vol_sd > 0:
        nodes = np.linspace(-grid.span, grid.span, grid.volume) if grid.volume > 1 else np.zeros(1)
        return Factor(
            nodes,
            0.0,
            1.0,
            lambda t, z: np.maximum(mean[t] + cfg.vol_sd * z, MIN_VOLUME),
            lambda t, v: (v - mean[t]) / cfg.vol_sd,
        )
    return Factor(
        np.zeros(1), 0.0, 0.0, lambda t, z: np.maximum(mean[t] + 0.0 * z, MIN_VOLUME), lambda t, v: np.zeros_like(v)
    )


def signal_factor(cfg: ExecConfig, grid: Grid) -> Factor:
    """The order-flow signal: an AR(1) with stationary variance 1, observed as it is."""
    if cfg.signal_strength > 0:
        nodes = np.linspace(-grid.span, grid.span, grid.signal) if grid.signal > 1 else np.zeros(1)
        return Factor(
            nodes, cfg.signal_phi, float(np.sqrt(1 - cfg.signal_phi**2)), lambda t, s: s * 1.0, lambda t, s: s * 1.0
        )
    return Factor(np.zeros(1), 0.0, 0.0, lambda t, s: 0.0 * s, lambda t, s: np.zeros_like(s))


def spread_factor(cfg: ExecConfig, grid: Grid) -> Factor:
    """The spread state: the log-AR(1) state ``y``, or a constant half-spread."""
    base = cfg.spread_bps * 1e-4 * cfg.p0
    if cfg.spread_model == "log_ar1" and cfg.spread_innov_sd > 0:
        s2 = stationary_var(cfg.spread_phi, cfg.spread_innov_sd)
        nodes = np.linspace(-grid.span, grid.span, grid.spread) * np.sqrt(s2) if grid.spread > 1 else np.zeros(1)
        return Factor(
            nodes,
            cfg.spread_phi,
            cfg.spread_innov_sd,
            lambda t, y: base * np.exp(y - 0.5 * s2),
            lambda t, h: np.log(h / base) + 0.5 * s2,
        )
    return Factor(np.zeros(1), 0.0, 0.0, lambda t, y: base + 0.0 * y, lambda t, h: np.zeros_like(h))


def _slope(d: np.ndarray, dx: float, at: np.ndarray) -> np.ndarray:
    """Slope at points ``at`` of a function on a uniform grid (last axis) given its finite
    differences ``d`` (``np.diff(values) / dx``): they sit at the cells' midpoints and are
    interpolated linearly."""
    n = d.shape[-1]
    pos = at / dx - 0.5
    k = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
    u = pos - k  # beyond the outer midpoints (half a cell at most) the line is extended
    lo = np.take_along_axis(d, k, axis=-1)
    hi = np.take_along_axis(d, np.minimum(k + 1, n - 1), axis=-1)
    return lo + u * (hi - lo)


def _value(values: np.ndarray, d: np.ndarray, dx: float, at: np.ndarray) -> np.ndarray:
    """A function on a uniform grid (last axis, finite differences ``d``) at points ``at``: the
    value at the cell's left node plus the integral of ``_slope`` from it (exact for a quadratic,
    as ``_slope`` is)."""
    n = values.shape[-1]
    pos = at / dx
    k = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    u = np.clip(pos - k, 0.0, 1.0)
    d_k = np.take_along_axis(d, k, axis=-1)
    # the slopes of the neighbouring cells; at the ends, the line through the two nearest
    d_before = np.take_along_axis(d, np.maximum(k - 1, 0), axis=-1)
    d_after = np.take_along_axis(d, np.minimum(k + 1, n - 2), axis=-1)
    if n > 2:
        d_before = np.where(k == 0, 2 * d[..., :1] - d[..., 1:2], d_before)
        d_after = np.where(k == n - 2, 2 * d[..., -1:] - d[..., -2:-1], d_after)
    v, w = np.minimum(u, 0.5), np.maximum(u - 0.5, 0.0)
    rising = d_before * v + (d_k - d_before) * (((0.5 + v) ** 2 - 0.25) / 2)  # up to the midpoint
    past = d_k * w + (d_after - d_k) * (w * w / 2)  # beyond it
    return np.take_along_axis(values, k, axis=-1) + dx * (rising + past)


class _Pieces:
    """``_value`` and ``_slope`` of functions on a uniform grid (last axis; one per row of the
    leading axes) as polynomials per piece, computed once per slice: the dark venue's stage
    evaluates them at some hundred points per grid point, where indexing per call dominated.
    The same functions as ``_value`` and ``_slope`` up to rounding (a test)."""

    def __init__(self, values: np.ndarray, d: np.ndarray, dx: float) -> None:
        rows, n = values.reshape(-1, values.shape[-1]), values.shape[-1]  # (R, n), n >= 3
        dd = d.reshape(-1, n - 1)
        self.shape, self.dx, self.n = values.shape[:-1], dx, n
        step = dd[:, 1:] - dd[:, :-1]  # the slope's pieces, between the cells' midpoints
        self.s0 = (dd[:, :-1] - np.arange(n - 2) * step).ravel()
        self.s1 = step.ravel()
        before = np.concatenate([2 * dd[:, :1] - dd[:, 1:2], dd[:, :-1]], axis=1)
        after = np.concatenate([dd[:, 1:], 2 * dd[:, -1:] - dd[:, -2:-1]], axis=1)
        half = np.empty((3, len(rows), 2 * (n - 1)))  # the value's: half cells, from each node
        half[0, :, 0::2] = rows[:, :-1]
        half[1, :, 0::2] = dx * (before + dd) / 2
        half[2, :, 0::2] = dx * (dd - before) / 2
        half[0, :, 1::2] = rows[:, :-1] + dx * (0.125 * before + 0.375 * dd)
        half[1, :, 1::2] = dx * dd
        half[2, :, 1::2] = dx * (after - dd) / 2
        self.v0, self.v1, self.v2 = (h.ravel() for h in half)

    def _rows(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if at.shape[: len(self.shape)] != self.shape:  # the points must come per row of the grid's
            raise ValueError(f"points of shape {at.shape} for functions of shape {self.shape}")
        flat = at.reshape(int(np.prod(self.shape, dtype=np.int64)), -1)
        return flat, np.arange(len(flat))[:, None]

    def slope(self, at: np.ndarray) -> np.ndarray:
        flat, row = self._rows(at)
        pos = flat / self.dx - 0.5
        idx = np.clip(np.floor(pos).astype(np.int64), 0, self.n - 3) + row * (self.n - 2)
        return (self.s0[idx] + pos * self.s1[idx]).reshape(at.shape)

    def value(self, at: np.ndarray) -> np.ndarray:
        flat, row = self._rows(at)
        pos = np.clip(flat / self.dx, 0.0, self.n - 1)
        h = np.minimum(np.floor(2 * pos).astype(np.int64), 2 * self.n - 3)
        r = pos - 0.5 * h
        idx = h + row * (2 * self.n - 2)
        return (self.v0[idx] + r * (self.v1[idx] + r * self.v2[idx])).reshape(at.shape)


def _minimise(
    a: Any, b: Any, c: Any, x: np.ndarray, qmax: np.ndarray, slope: Callable[[np.ndarray], np.ndarray], steps: int
) -> np.ndarray:
    """The exact minimiser over ``0 <= q <= qmax`` of ``a q + b q^2 + c q^1.5 + C(x - q)`` for a
    convex continuation ``C`` with derivative ``slope``: bisection on the first-order condition."""

    def g(q: np.ndarray) -> np.ndarray:
        return a + 2 * b * q + 1.5 * c * np.sqrt(q) - slope(x - q)

    lo, hi = np.zeros_like(qmax), qmax.copy()
    at_zero, at_max = g(lo) >= 0, g(hi) <= 0
    return np.where(at_zero, 0.0, np.where(at_max, qmax, _bisect(g, lo, hi, steps)))


def _bisect(g: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray, steps: int) -> np.ndarray:
    """The midpoint of ``[lo, hi]`` after ``steps`` halvings towards a sign change of the
    increasing-where-it-matters ``g`` (to an end of the bracket where ``g`` keeps its sign)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        up = g(mid) > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    return 0.5 * (lo + hi)


@dataclass
class Solution:
    """A solved DP: the continuation values ``W[t] = E[J_{t+1}]`` on the grid, ``(T-1, nz, ny, ns, nx)``
    (volume, spread and signal states, inventory)."""

    cfg: ExecConfig
    grid: Grid
    W: np.ndarray
    volume: Factor
    spread: Factor
    signal: Factor
    seconds: float

    @property
    def dx(self) -> float:
        return self.cfg.Q0 / (self.grid.inventory - 1)

    def _continuation(self, t: int, z: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
        """``W[t]`` interpolated at each episode's ``(z, y, s)``: ``(B, nx)``."""
        iz, wz = keys_weights(self.volume.nodes, z)
        iy, wy = keys_weights(self.spread.nodes, y)
        out = np.empty((len(z), self.W.shape[-1]))
        if len(self.signal.nodes) == 1:
            Wt = self.W[t][:, :, 0]
            for start in range(0, len(z), 2048):  # bounded memory: (chunk, 4, 4, nx)
                sl = slice(start, start + 2048)
                block = Wt[iz[sl][:, :, None], iy[sl][:, None, :]]
                out[sl] = np.einsum("bijx,bi,bj->bx", block, wz[sl], wy[sl])
            return out
        i_s, ws = keys_weights(self.signal.nodes, s)
        for start in range(0, len(z), 512):  # (chunk, 4, 4, 4, nx)
            sl = slice(start, start + 512)
            block = self.W[t][iz[sl][:, :, None, None], iy[sl][:, None, :, None], i_s[sl][:, None, None, :]]
            out[sl] = np.einsum("bijkx,bi,bj,bk->bx", block, wz[sl], wy[sl], ws[sl])
        return out

    def decide(
        self, t: int, x: np.ndarray, volume: np.ndarray, half_spread: np.ndarray, signal: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The optimal orders of episodes at slice ``t`` holding ``x`` with the slice's observed
        volume, spread and signal: ``(lit shares, dark order, value J_t of the state in $)``; the
        dark order is 0 without a dark venue. The value leaves out the constants: the permanent
        impact's ``kappa Q0^2 / 2`` and what the drift so far adds to every share still to sell,
        ``side (p0 - mid_sched_t) x`` (the drift is priced where it arises: see the module doc)."""
        signal = np.zeros_like(volume) if signal is None else signal
        mid_sched = np.full_like(volume, self.cfg.p0)
        Wt = None
        if t < self.cfg.T - 1:
            Wt = self._continuation(
                t, self.volume.state(t, volume), self.spread.state(t, half_spread), self.signal.state(t, signal)
            )
        q, dark, value = _stage(
            self, t, x[:, None], volume[:, None], half_spread[:, None], mid_sched[:, None], signal[:, None], Wt
        )
        return q[:, 0], dark[:, 0], value[:, 0]

    def predicted_bps(
        self, volume0: np.ndarray, half_spread0: np.ndarray, signal0: np.ndarray | None = None
    ) -> np.ndarray:
        """The solver's own value ``J_0`` at episodes' initial states (their slice-0 volume,
        spread and signal), in bps of arrival notional: the expected schedule objective of the
        optimum."""
        cfg = self.cfg
        _, _, value = self.decide(0, np.full(len(volume0), cfg.Q0), volume0, half_spread0, signal0)
        return (value + 0.5 * cfg.kappa * cfg.Q0**2) * (1e4 / cfg.notional)


def cache_key(cfg: ExecConfig, grid: Grid) -> str:
    """What determines a solution: the model's fields (not the agent's interface) and the grid."""
    model = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in (*INTERFACE_FIELDS, "reward")}
    blob = json.dumps(
        {"model": model, "grid": dataclasses.asdict(grid), "version": VERSION}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_dir() -> Path:
    """Where solutions are cached: ``$SB3_EXEC_CACHE/dp`` (default ``~/.cache/sb3_exec/dp``)."""
    root = os.environ.get("SB3_EXEC_CACHE") or Path.home() / ".cache" / "sb3_exec"
    return Path(root) / "dp"


def solve(cfg: ExecConfig, grid: Grid | None = None, progress: bool = False, cache: bool = True) -> Solution:
    """Solve the DP of a config by backward induction (batched over the grid), or load it from the
    cache. ``grid``: ``default_grid(cfg)`` when None. ``progress`` shows a bar over the slices.

    :raises ValueError: where the DP cannot represent the config (``unsupported``)
    """
    import time

    grid = grid or default_grid(cfg)
    reason = unsupported(cfg)
    if reason is not None:
        raise ValueError(reason)
    vol, spr, sig = volume_factor(cfg, grid), spread_factor(cfg, grid), signal_factor(cfg, grid)
    path = cache_dir() / f"{cache_key(cfg, grid)}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            return Solution(cfg, grid, f["W"], vol, spr, sig, float(f["seconds"]))
    start = time.perf_counter()
    T, nx = cfg.T, grid.inventory
    nz, ny, ns = len(vol.nodes), len(spr.nodes), len(sig.nodes)
    x = np.linspace(0.0, cfg.Q0, nx)  # states: (nz, ny, ns, nx)
    Az, Ay, As = vol.expectation(grid.quadrature), spr.expectation(grid.quadrature), sig.expectation(grid.quadrature)
    W = np.zeros((max(T - 1, 0), nz, ny, ns, nx))
    sol = Solution(cfg, grid, W, vol, spr, sig, 0.0)
    stages = range(T - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        stages = tqdm(stages, desc="dp", unit="slice", leave=False)
    shape = (nz, ny, ns, 1)
    for t in stages:
        volume = np.broadcast_to(vol.observable(t, vol.nodes)[:, None, None, None], shape)
        half_spread = np.broadcast_to(spr.observable(t, spr.nodes)[None, :, None, None], shape)
        signal = np.broadcast_to(sig.observable(t, sig.nodes)[None, None, :, None], shape)
        if ns == 1 and not cfg.dark_venue:  # (nz, ny, nx), as before the signal joined
            args = [a[:, :, 0] * np.ones((1, 1, 1)) for a in (volume, half_spread, signal)]
            xs = np.broadcast_to(x, (nz, ny, nx))
            _, _, J = _stage(
                sol,
                t,
                xs,
                args[0],
                args[1],
                np.full_like(args[0], cfg.p0),
                args[2],
                W[t, :, :, 0] if t < T - 1 else None,
            )
            if t > 0:
                W[t - 1, :, :, 0] = np.einsum("ai,bj,ijx->abx", Az, Ay, J)
            continue
        # the general case, flattened over the exogenous states: (nz ny ns, nx)
        flat = [np.ascontiguousarray(a).reshape(-1, 1) for a in (volume, half_spread, signal)]
        xs = np.broadcast_to(x, (len(flat[0]), nx))
        _, _, J = _stage(
            sol,
            t,
            xs,
            flat[0],
            flat[1],
            np.full_like(flat[0], cfg.p0),
            flat[2],
            W[t].reshape(-1, nx) if t < T - 1 else None,
        )
        if t > 0:
            W[t - 1] = np.einsum("ai,bj,ck,ijkx->abcx", Az, Ay, As, J.reshape(nz, ny, ns, nx))
    sol.seconds = time.perf_counter() - start
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, W=W, seconds=sol.seconds)
        os.replace(tmp, path)
    return sol


def dark_nodes(sd: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the hidden liquidity over its mean, ``exp(sd e - sd^2/2)``: ``m`` bins
    of ``e`` with edges at the probabilities ``1 - (1 - i/m)^2``, narrower towards the upper tail,
    each at its conditional mean of the liquidity (weight: its probability). The mean is kept
    exactly, and the expected capped fill ``E[min(order, liquidity)]`` is within about 1% for
    orders from a quarter to ten times the mean with 8 nodes (Gauss-Hermite's nodes miss it by up
    to 5%: the cap is a kink; equiprobable bins cut the tail off at 3.5 times the mean, so that
    larger orders look worthless)."""
    if sd <= 0:
        return np.ones(1), np.ones(1)
    from scipy.stats import norm

    p = 1.0 - (1.0 - np.linspace(0.0, 1.0, m + 1)) ** 2
    prob = np.diff(p)
    edges = norm.ppf(p)
    return np.diff(norm.cdf(edges - sd)) / prob, prob


def drift_cost(cfg: ExecConfig, signal: Any) -> Any:
    """What the signal's predictable drift costs per share held after the slice ($/share): a
    move ``d = signal_strength * p0 sigma sqrt(dt) * s`` in the price of every later trade, so
    ``-side * d`` (a rising price pays a seller who waits; see the module doc)."""
    return -cfg.sign * cfg.signal_strength * cfg.p0 * cfg.sigma * np.sqrt(cfg.dt) * signal


def _after(
    sol: Solution,
    Wt: np.ndarray | None,
    r: float,
    drift: Any,
    deadline: tuple[Any, Any, Any],
    pieces: bool = False,
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """The slope and the value of what follows a slice's trades, as functions of the shares left
    (arrays whose leading axes are ``Wt``'s, or any shape at the last slice): the continuation
    ``Wt`` plus the risk term and the drift's cost ``drift * left`` (None: no signal), or at the
    last slice the deadline liquidation with coefficients ``deadline``."""
    if Wt is None:
        ad, bd, cd = deadline
        return (
            lambda left: ad + 2 * bd * left + 1.5 * cd * np.sqrt(left),
            lambda left: ad * left + bd * left**2 + cd * left**1.5,
        )
    d = np.diff(Wt, axis=-1) / sol.dx

    def on_grid(f: Callable[..., np.ndarray], *args: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        def at(left: np.ndarray) -> np.ndarray:
            flat = left.reshape((*Wt.shape[:-1], -1))
            return f(*args, sol.dx, flat).reshape(left.shape)

        return at

    slope_w: Callable[[np.ndarray], np.ndarray]
    value_w: Callable[[np.ndarray], np.ndarray]
    if pieces:  # the same functions, precomputed per piece (the dark venue's many evaluations)
        fn = _Pieces(Wt, d, sol.dx)
        slope_w, value_w = fn.slope, fn.value
    else:
        slope_w, value_w = on_grid(_slope, d), on_grid(_value, Wt, d)

    # the risk term and the drift only where they are (the dark venue's stage is hot)
    def slope(left: np.ndarray) -> np.ndarray:
        out = slope_w(left)
        out = 2 * r * left + out if r else out
        return out if drift is None else out + drift

    def value(left: np.ndarray) -> np.ndarray:
        out = value_w(left)
        out = r * left**2 + out if r else out
        return out if drift is None else out + drift * left

    return slope, value


def _stage(
    sol: Solution,
    t: int,
    x: np.ndarray,
    volume: np.ndarray,
    half_spread: np.ndarray,
    mid_sched: np.ndarray,
    signal: np.ndarray,
    Wt: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slice ``t``'s optimal orders ``(lit, dark)`` and the value ``J_t`` of states ``x`` (arrays
    that broadcast; the continuation ``Wt`` has the inventory grid on its last axis, None at the
    last slice, whose continuation is the deadline liquidation)."""
    cfg = sol.cfg
    a, b, c = schedule_cost_coefficients(cfg, volume, half_spread, mid_sched)
    ad, bd, cd = deadline_coefficients(cfg, a, b, c)  # the deadline pays no aggressiveness penalty
    if cfg.aggressiveness_penalty:
        b = b + aggressiveness_coefficient(cfg, 1.0 / volume**2)
    qmax = np.minimum(x, cfg.max_participation * volume)
    r = cfg.risk_aversion * cfg.sigma_dollars**2 * cfg.dt
    drift = drift_cost(cfg, signal) if cfg.signal_strength > 0 and Wt is not None else None
    if cfg.dark_venue:  # the candidates and the dark nodes on two more axes

        def four(v: Any) -> Any:
            return None if v is None else np.asarray(v)[..., None, None]

        slope, after = _after(sol, Wt, r, four(drift), (four(ad), four(bd), four(cd)), pieces=True)
        return _with_dark(sol, x, volume, a, b, c, qmax, slope, after, mid_sched)
    slope, after = _after(sol, Wt, r, drift, (ad, bd, cd))
    if Wt is None and not deadline_option(cfg):
        q = qmax  # the model's problem ends with nothing left: the last slice trades all it can
    else:
        q = _minimise(a, b, c, x, qmax, slope, sol.grid.bisection)
    left = x - q
    return q, np.zeros_like(q), a * q + b * q**2 + c * q**1.5 + after(left)


def _with_dark(
    sol: Solution,
    x: np.ndarray,
    volume: np.ndarray,
    a: Any,
    b: Any,
    c: Any,
    qmax: np.ndarray,
    slope: Callable[[np.ndarray], np.ndarray],
    after: Callable[[np.ndarray], np.ndarray],
    mid_sched: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_stage`` with a dark venue: for each dark order of ``grid.dark_orders`` (and "everything")
    the lit trade of least expected cost over the hidden liquidity's nodes (``_scan_and_bisect``),
    then the best pair. Shapes: states ``(S, X)``; candidates on a third axis, dark nodes on a
    fourth."""
    cfg, grid = sol.cfg, sol.grid
    ratio, w = dark_nodes(cfg.dark_log_sd, grid.dark)
    expected = cfg.dark_share * volume  # (S, 1)
    liquidity = expected[:, :, None, None] * ratio  # (S, 1, 1, M)
    x4 = x[:, :, None, None]
    multiples = np.asarray(grid.dark_orders, dtype=np.float64)
    orders = np.concatenate(
        [np.broadcast_to(expected[:, :, None] * multiples, (*x.shape, len(multiples))), x[:, :, None]], axis=-1
    )  # (S, X, K)
    fill = np.minimum(np.minimum(orders[..., None], liquidity), x4)  # (S, X, K, M)
    room = x4 - fill  # what the lit trade may take
    a4, b4, c4 = (np.asarray(v)[..., None, None] for v in (a, b, c))
    adverse = cfg.sign * (cfg.p0 - mid_sched) + cfg.dark_adverse_bps * 1e-4 * cfg.p0
    dark_cost = np.sum(np.asarray(adverse)[..., None, None] * fill * w, axis=-1)  # at the mid, per share filled
    root_impact = bool(np.any(c4))  # the q^1.5 term: square-root impact only

    def cost(q: np.ndarray) -> np.ndarray:  # the expected cost of the pair, lit order q
        lit = np.minimum(q[..., None], room)  # (S, X, K, M)
        lit_cost = a4 * lit + b4 * lit**2 + (c4 * lit**1.5 if root_impact else 0.0)
        return dark_cost + np.sum((lit_cost + after(room - lit)) * w, axis=-1)

    def foc(q: np.ndarray) -> np.ndarray:  # its derivative: the nodes whose room q has not used up
        q4 = q[..., None]
        live = room > q4
        left = np.maximum(room - q4, 0.0)
        g = a4 + 2 * b4 * q4 + (1.5 * c4 * np.sqrt(q4) if root_impact else 0.0) - slope(left)
        return np.sum(np.where(live, g, 0.0) * w, axis=-1)

    # beyond the largest room the lit order trades all that is left in every node
    qmax3 = np.broadcast_to(qmax[:, :, None], orders.shape)
    top = np.minimum(qmax3, room.max(axis=-1))
    q, expected_cost = _scan_and_bisect(cost, foc, top, grid.scan, grid.bisection)
    # the same cost in the model; in the market, room beyond the nodes' is traded too
    q = np.where(q >= top, qmax3, q)
    best = np.argmin(expected_cost, axis=-1)[..., None]
    pick = lambda v: np.take_along_axis(v, best, axis=-1)[..., 0]  # noqa: E731
    return pick(q), pick(orders), pick(expected_cost)


def _scan_and_bisect(
    cost: Callable[[np.ndarray], np.ndarray],
    foc: Callable[[np.ndarray], np.ndarray],
    top: np.ndarray,
    scan: int,
    steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The minimiser over ``0 <= q <= top`` of an expected cost that is convex only between kinks
    (``cost``, its derivative ``foc``) and its value: the best of ``scan`` evenly spaced points,
    then bisection on ``foc`` between that point's neighbours, kept where it costs less.

    With a dark venue each hidden-liquidity node ``m`` stops responding to the lit order once the
    order takes all the room its fill left, ``room_m``: the node's marginal cost drops out there,
    so the expected first-order condition drops by that node's share past each ``room_m`` (below
    zero again, where the nodes still live would rather wait) and can have a root per stretch
    between them. Bisection over the whole range picks one of them (and at the
    top, where every node's room is used up, it reads 0 and took "trade everything"): on ``lob``
    that cost the DP a bp of schedule objective against this search."""
    fractions = np.linspace(0.0, 1.0, scan)
    best_cost = cost(top * fractions[0])
    best = np.zeros(best_cost.shape, dtype=np.int64)
    for j in range(1, scan):
        c = cost(top * fractions[j])
        better = c < best_cost
        best_cost = np.where(better, c, best_cost)
        best = np.where(better, j, best)
    lo = top * fractions[np.maximum(best - 1, 0)]
    hi = top * fractions[np.minimum(best + 1, scan - 1)]
    # to a sign change of foc in the bracket, or to an end of it; the scan point is kept below
    # wherever that costs more
    q = _bisect(foc, lo, hi, steps)
    c = cost(q)
    better = c < best_cost
    return np.where(better, q, top * fractions[best]), np.where(better, c, best_cost)
