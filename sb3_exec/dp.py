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
- Each trade is the exact minimiser of its 1-D convex problem: bisection on the first-order
  condition, the continuation's slope interpolated linearly between the grid's midpoints (exact
  for a quadratic value, so the Almgren-Chriss closed form is reproduced).
- The participation cap and the deadline liquidation as the env applies them (``costs``).
- At run time the policy uses the episode's actual volume and spread for the slice's cost and
  interpolates only the continuation value.

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

VERSION = 1  # bump when the solver's numbers change: old cache files are then ignored


@dataclass(frozen=True)
class Grid:
    """Grid sizes of the DP (defaults converged on ``liquidity``: see the tests).

    :param inventory: points of the inventory grid on ``[0, Q0]`` (>= 3)
    :param volume: points of the volume state (where it moves)
    :param spread: points of the spread state (where it moves)
    :param quadrature: Gauss-Hermite nodes per innovation
    :param span: half-width of the state grids in stationary SDs
    :param bisection: bisection steps of each 1-D minimisation
    """

    inventory: int = 201
    volume: int = 21
    spread: int = 21
    quadrature: int = 9
    span: float = 4.5
    bisection: int = 50

    def __post_init__(self) -> None:
        for name, low in (("inventory", 3), ("volume", 1), ("spread", 1), ("quadrature", 1), ("bisection", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.span, (int, float)) and self.span > 0):
            raise ValueError(f"span must be a positive number, got {self.span!r}")


def unsupported(cfg: ExecConfig) -> str | None:
    """Why the DP cannot represent a config (a message naming the field), or None."""
    reason = planner_unsupported(cfg)
    if reason is not None:
        return reason
    if cfg.participation_change_penalty:
        return ("participation_change_penalty: it couples the slices through the last participation, "
                "which the DP's state (t, x, volume, spread) does not hold")
    if cfg.signal_strength > 0:
        return "signal_strength: the order-flow signal (lob-like configs) is not in the DP's state yet"
    if cfg.dark_venue:
        return "dark_share: the dark venue (lob-like configs) is not a control of the DP yet"
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
        return np.zeros(points.shape + (4,), dtype=np.int64), np.concatenate(
            [np.ones(points.shape + (1,)), np.zeros(points.shape + (3,))], axis=-1)
    h = nodes[1] - nodes[0]
    pos = (np.clip(points, nodes[0], nodes[-1]) - nodes[0]) / h
    k = np.minimum(np.floor(pos).astype(np.int64), n - 2)
    u = pos - k
    u2, u3 = u * u, u * u * u
    w = np.stack([(-u3 + 2 * u2 - u) / 2, (3 * u3 - 5 * u2 + 2) / 2, (-3 * u3 + 4 * u2 + u) / 2,
                  (u3 - u2) / 2], axis=-1)
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
    observable: Callable[[np.ndarray, np.ndarray], np.ndarray]
    state: Callable[[np.ndarray, np.ndarray], np.ndarray]

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
        return Factor(nodes, cfg.volume_phi, cfg.volume_innov_sd,
                      lambda t, z: np.maximum(mean[t] * np.exp(z - 0.5 * s2), MIN_VOLUME),
                      lambda t, v: np.log(v / mean[t]) + 0.5 * s2)
    if cfg.volume_model == "normal" and cfg.vol_sd > 0:
        nodes = np.linspace(-grid.span, grid.span, grid.volume) if grid.volume > 1 else np.zeros(1)
        return Factor(nodes, 0.0, 1.0, lambda t, z: np.maximum(mean[t] + cfg.vol_sd * z, MIN_VOLUME),
                      lambda t, v: (v - mean[t]) / cfg.vol_sd)
    return Factor(np.zeros(1), 0.0, 0.0, lambda t, z: np.maximum(mean[t] + 0.0 * z, MIN_VOLUME),
                  lambda t, v: np.zeros_like(v))


def spread_factor(cfg: ExecConfig, grid: Grid) -> Factor:
    """The spread state: the log-AR(1) state ``y``, or a constant half-spread."""
    base = cfg.spread_bps * 1e-4 * cfg.p0
    if cfg.spread_model == "log_ar1" and cfg.spread_innov_sd > 0:
        s2 = stationary_var(cfg.spread_phi, cfg.spread_innov_sd)
        nodes = np.linspace(-grid.span, grid.span, grid.spread) * np.sqrt(s2) if grid.spread > 1 else np.zeros(1)
        return Factor(nodes, cfg.spread_phi, cfg.spread_innov_sd,
                      lambda t, y: base * np.exp(y - 0.5 * s2), lambda t, h: np.log(h / base) + 0.5 * s2)
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


def _minimise(a: Any, b: Any, c: Any, x: np.ndarray, qmax: np.ndarray,
              slope: Callable[[np.ndarray], np.ndarray], steps: int) -> np.ndarray:
    """The exact minimiser over ``0 <= q <= qmax`` of ``a q + b q^2 + c q^1.5 + C(x - q)`` for a
    convex continuation ``C`` with derivative ``slope``: bisection on the first-order condition."""
    def g(q: np.ndarray) -> np.ndarray:
        return a + 2 * b * q + 1.5 * c * np.sqrt(q) - slope(x - q)

    lo, hi = np.zeros_like(qmax), qmax.copy()
    at_zero, at_max = g(lo) >= 0, g(hi) <= 0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        up = g(mid) > 0
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid)
    return np.where(at_zero, 0.0, np.where(at_max, qmax, 0.5 * (lo + hi)))


@dataclass
class Solution:
    """A solved DP: the continuation values ``W[t] = E[J_{t+1}]`` on the grid, ``(T-1, nz, ny, nx)``."""

    cfg: ExecConfig
    grid: Grid
    W: np.ndarray
    volume: Factor
    spread: Factor
    seconds: float

    @property
    def dx(self) -> float:
        return self.cfg.Q0 / (self.grid.inventory - 1)

    def _continuation(self, t: int, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``W[t]`` interpolated at each episode's ``(z, y)``: ``(B, nx)``."""
        iz, wz = keys_weights(self.volume.nodes, z)
        iy, wy = keys_weights(self.spread.nodes, y)
        out = np.empty((len(z), self.W.shape[-1]))
        for start in range(0, len(z), 2048):  # bounded memory: (chunk, 4, 4, nx)
            sl = slice(start, start + 2048)
            block = self.W[t][iz[sl][:, :, None], iy[sl][:, None, :]]
            out[sl] = np.einsum("bijx,bi,bj->bx", block, wz[sl], wy[sl])
        return out

    def decide(self, t: int, x: np.ndarray, volume: np.ndarray, half_spread: np.ndarray,
               mid_sched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The optimal trade of episodes at slice ``t`` holding ``x`` with the slice's observed
        volume and spread, and the value ``J_t`` of that state ($, without the constant)."""
        Wt = None
        if t < self.cfg.T - 1:
            Wt = self._continuation(t, self.volume.state(t, volume), self.spread.state(t, half_spread))
        q, value = _stage(self, t, x[:, None], volume[:, None], half_spread[:, None], mid_sched[:, None], Wt)
        return q[:, 0], value[:, 0]

    def predicted_bps(self, volume0: np.ndarray, half_spread0: np.ndarray, mid_sched0: np.ndarray) -> np.ndarray:
        """The solver's own value ``J_0`` at episodes' initial states (their slice-0 volume and
        spread), in bps of arrival notional: the expected schedule objective of the optimum."""
        cfg = self.cfg
        _, value = self.decide(0, np.full(len(volume0), cfg.Q0), volume0, half_spread0, mid_sched0)
        return (value + 0.5 * cfg.kappa * cfg.Q0**2) * (1e4 / cfg.notional)


def cache_key(cfg: ExecConfig, grid: Grid) -> str:
    """What determines a solution: the model's fields (not the agent's interface) and the grid."""
    model = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in (*INTERFACE_FIELDS, "reward")}
    blob = json.dumps({"model": model, "grid": dataclasses.asdict(grid), "version": VERSION},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_dir() -> Path:
    """Where solutions are cached: ``$SB3_EXEC_CACHE/dp`` (default ``~/.cache/sb3_exec/dp``)."""
    root = os.environ.get("SB3_EXEC_CACHE") or Path.home() / ".cache" / "sb3_exec"
    return Path(root) / "dp"


def solve(cfg: ExecConfig, grid: Grid | None = None, progress: bool = False, cache: bool = True) -> Solution:
    """Solve the DP of a config by backward induction (batched over the grid), or load it from the
    cache. ``progress`` shows a bar over the slices.

    :raises ValueError: where the DP cannot represent the config (``unsupported``)
    """
    import time

    grid = grid or Grid()
    reason = unsupported(cfg)
    if reason is not None:
        raise ValueError(reason)
    vol, spr = volume_factor(cfg, grid), spread_factor(cfg, grid)
    path = cache_dir() / f"{cache_key(cfg, grid)}.npz"
    if cache and path.exists():
        with np.load(path) as f:
            return Solution(cfg, grid, f["W"], vol, spr, float(f["seconds"]))
    start = time.perf_counter()
    T, nx = cfg.T, grid.inventory
    x = np.linspace(0.0, cfg.Q0, nx)[None, None, :]  # states: (nz, ny, nx)
    Az, Ay = vol.expectation(grid.quadrature), spr.expectation(grid.quadrature)
    W = np.zeros((max(T - 1, 0), len(vol.nodes), len(spr.nodes), nx))
    sol = Solution(cfg, grid, W, vol, spr, 0.0)
    stages = range(T - 1, -1, -1)
    if progress:
        from tqdm.auto import tqdm

        stages = tqdm(stages, desc="dp", unit="slice", leave=False)
    for t in stages:
        volume = vol.observable(t, vol.nodes)[:, None, None] * np.ones((1, len(spr.nodes), 1))
        half_spread = spr.observable(t, spr.nodes)[None, :, None] * np.ones((len(vol.nodes), 1, 1))
        xs = np.broadcast_to(x, volume.shape[:2] + (nx,))
        _, J = _stage(sol, t, xs, volume, half_spread, np.full_like(volume, cfg.p0),
                      W[t] if t < T - 1 else None)
        if t > 0:
            W[t - 1] = np.einsum("ai,bj,ijx->abx", Az, Ay, J)
    sol.seconds = time.perf_counter() - start
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, W=W, seconds=sol.seconds)
        os.replace(tmp, path)
    return sol


def _stage(sol: Solution, t: int, x: np.ndarray, volume: np.ndarray, half_spread: np.ndarray,
           mid_sched: np.ndarray, Wt: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Slice ``t``'s optimal trade and the value ``J_t`` of states ``x`` (arrays that broadcast;
    the continuation ``Wt`` has the inventory grid on its last axis, None at the last slice,
    whose continuation is the deadline liquidation)."""
    cfg = sol.cfg
    a, b, c = schedule_cost_coefficients(cfg, volume, half_spread, mid_sched)
    ad, bd, cd = deadline_coefficients(cfg, a, b, c)  # the deadline pays no aggressiveness penalty
    if cfg.aggressiveness_penalty:
        b = b + aggressiveness_coefficient(cfg, 1.0 / volume**2)
    qmax = np.minimum(x, cfg.max_participation * volume)
    r = cfg.risk_aversion * cfg.sigma_dollars**2 * cfg.dt
    if Wt is None:
        def slope(left: np.ndarray) -> np.ndarray:
            return ad + 2 * bd * left + 1.5 * cd * np.sqrt(left)
    else:
        d = np.diff(Wt, axis=-1) / sol.dx

        def slope(left: np.ndarray) -> np.ndarray:
            return 2 * r * left + _slope(d, sol.dx, left)

    if Wt is None and not deadline_option(cfg):
        q = qmax  # the model's problem ends with nothing left: the last slice trades all it can
    else:
        q = _minimise(a, b, c, x, qmax, slope, sol.grid.bisection)
    left = x - q
    if Wt is None:
        cont = ad * left + bd * left**2 + cd * left**1.5
    else:
        cont = r * left**2 + _value(Wt, d, sol.dx, left)
    return q, a * q + b * q**2 + c * q**1.5 + cont
