"""Planners: water-filling, the coupled convex solve, the certainty-equivalent MPC's plan.

Owns what the oracle and the adaptive MPC solve: which configs they can solve (``unsupported``),
the exact separable solve (``water_fill``), the deadline as one more option (``plan_with_deadline``),
the small convex solve where a risk term or the participation-change penalty couples the slices
(``coupled_fill``), the model's conditional forecasts of the slices to come
(``conditional_liquidity``, ``expected_dark``) and the MPC's orders for a batch (``mpc_orders``).
The cost coefficients come from ``sb3_exec.costs``; the policies that use these are in
``sb3_exec.baselines``.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from sb3_exec.analytic import ac_model, analytic_optimum_bps
from sb3_exec.config import ExecConfig
from sb3_exec.costs import aggressiveness_coefficient, deadline_coefficients, impact, schedule_cost_coefficients
from sb3_exec.dynamics import Market, State
from sb3_exec.market import stationary_var, volume_profile


def unsupported(cfg: ExecConfig) -> str | None:
    """Why the oracle and the MPC cannot solve a config exactly (a message naming the field),
    or None where they can: impact additive in dollars; no permanent impact beside a dark venue;
    impact linear in the trade where slices are coupled."""
    if not impact(cfg).additive:
        return (
            "temp_impact: the oracle needs impact additive in dollars ('rate', 'linear', "
            "'sqrt'); the notebook's 'participation' impact is proportional to the current price"
        )
    if cfg.dark_venue and cfg.kappa > 0:
        return (
            "kappa: with a dark venue the oracle needs no permanent impact (dark fills would "
            "pair with earlier lit trades)"
        )
    if coupled(cfg) and not impact(cfg).linear:
        return (
            "temp_impact: the convex solver for coupled slices (risk term, participation-change "
            "penalty) needs impact linear in the trade ('rate' or 'linear'), not 'sqrt'"
        )
    return None


def coupled(cfg: ExecConfig) -> bool:
    """Whether the schedule objective couples slices beyond what the closed form solves: a
    participation-change penalty, or a risk term outside the exact Almgren-Chriss model."""
    return bool(cfg.participation_change_penalty) or (cfg.risk_aversion > 0 and analytic_optimum_bps(cfg) is None)


def require_support(cfg: ExecConfig) -> None:
    """Raise ``ValueError`` naming the field where the planners cannot solve a config."""
    reason = unsupported(cfg)
    if reason is not None:
        raise ValueError(reason)


def water_fill(
    a: np.ndarray, b: np.ndarray, cap: np.ndarray, total: np.ndarray, c: np.ndarray | None = None, iterations: int = 64
) -> np.ndarray:
    """Exact minimiser of ``sum_t a_t q_t + b_t q_t^2 (+ c_t q_t^1.5)`` subject to
    ``sum_t q_t = total`` and ``0 <= q_t <= cap_t``, per row (a batch of episodes).

    The problem is convex and separable, so the KKT conditions give ``q_t(nu)``: the slice's
    marginal cost ``a_t + 2 b_t q + 1.5 c_t sqrt(q)`` equals the multiplier ``nu`` unless a bound
    binds. ``nu`` is found by bisection, then the two bracketing solutions are interpolated so
    the sum is exact. Rows whose caps cannot hold ``total`` trade every cap (the deadline takes
    the rest). Arrays are ``(B, n)``, ``total`` is ``(B,)``; needs ``b > 0`` or ``c > 0``.
    """
    a, b, cap = (np.asarray(v, dtype=np.float64) for v in (a, b, cap))
    c = np.zeros_like(a) if c is None else np.asarray(c, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    linear = (b <= 0) & (c <= 0)  # a linear cost: all of its cap once nu passes a, else nothing
    if np.any(linear & ~np.isfinite(cap)):
        raise ValueError("b: a slice with a linear cost (b = c = 0) needs a finite cap")

    quadratic = not c.any()
    if quadratic:  # the common case, on a fast path: q = clip((nu - a) / 2b, 0, cap)
        with np.errstate(divide="ignore"):  # a linear slice: its whole (finite) cap once nu > a
            half_slope = np.where(b > 0, 0.5 / np.where(b > 0, b, 1.0), 1e300)

    def q_of(nu: np.ndarray) -> np.ndarray:
        if quadratic:
            with np.errstate(over="ignore"):
                return np.minimum(np.maximum(nu[:, None] - a, 0.0) * half_slope, cap)
        gap = np.maximum(nu[:, None] - a, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lin = np.where(b > 0, gap / (2 * b), np.inf)
            # 2 b u^2 + 1.5 c u - gap = 0 in u = sqrt(q)
            disc = np.sqrt((1.5 * c) ** 2 + 8 * b * gap)
            u = np.where(b > 0, (disc - 1.5 * c) / (4 * b), gap / np.where(c > 0, 1.5 * c, 1.0))
        q = np.where(c > 0, u**2, lin)
        q = np.where(linear, np.where(nu[:, None] > a, np.inf, 0.0), q)
        return np.minimum(q, cap)

    lo = a.min(axis=1) - 1.0
    hi = (a + 2 * b * cap + 1.5 * c * np.sqrt(cap)).max(axis=1) + 1.0
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        over = q_of(mid).sum(axis=1) > total
        hi = np.where(over, mid, hi)
        lo = np.where(over, lo, mid)
    q_lo, q_hi = q_of(lo), q_of(hi)
    s_lo, s_hi = q_lo.sum(axis=1), q_hi.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(s_hi > s_lo, (total - s_lo) / (s_hi - s_lo), 0.0)
    q = q_lo + np.clip(w, 0.0, 1.0)[:, None] * (q_hi - q_lo)
    return np.where((cap.sum(axis=1) <= total)[:, None], cap, q)


def risk_schedule(cfg: ExecConfig, x: np.ndarray, t: int) -> np.ndarray:
    """With a risk term the problem does not separate; in the exact Almgren-Chriss model the
    closed form over the remaining slices is its solution (``x`` shares left at slice ``t``)."""
    require_support(cfg)
    rest = ac_model(cfg.replace(T=cfg.T - t, Q0=1.0))  # holdings per share still held
    trades = -np.diff(rest.holdings())
    return x[:, None] * trades[None, :]


def plan_with_deadline(
    cfg: ExecConfig,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    volume: np.ndarray,
    mid_sched: np.ndarray,
    total: np.ndarray,
    inv_volume_sq: np.ndarray | None = None,
    dark: np.ndarray | None = None,
    past: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Water-fill the slices' lit trades, their dark orders (at the mid plus adverse selection,
    capped by the dark liquidity ``dark``) and, as one more uncapped option, the deadline
    liquidation of what is left (spread plus ``deadline_penalty`` times the temporary impact at
    the last slice's volume). Returns the plans ``(lit, dark)`` of the real slices (the env
    forces the rest at the deadline). ``inv_volume_sq``: ``E[1/V^2]`` for the aggressiveness
    penalty (default ``1/volume^2``). ``past``: a ``(B, n)`` mask of slices that can no longer trade
    (capped at 0).

    The deadline option is exact without permanent impact (``kappa = 0``) and approximate
    otherwise (its permanent-impact pairing is that of one more slice)."""
    n = a.shape[1]
    a_d, b_d, c_d = deadline_coefficients(cfg, a[:, -1], b[:, -1], c[:, -1])
    if cfg.aggressiveness_penalty:  # w bps * (q/V)^2 on lit trades, not on the deadline's
        inv_sq = 1.0 / volume**2 if inv_volume_sq is None else inv_volume_sq
        b = b + aggressiveness_coefficient(cfg, inv_sq)
    lit_cap = cfg.max_participation * volume
    if past is not None:
        lit_cap = np.where(past, 0.0, lit_cap)
        dark = None if dark is None else np.where(past, 0.0, dark)
    cols_a, cols_b, cols_c, caps = [a, a_d[:, None]], [b, b_d[:, None]], [c, c_d[:, None]], [lit_cap, total[:, None]]
    if dark is not None:
        cols_a.append(cfg.sign * (cfg.p0 - mid_sched) + cfg.dark_adverse_bps * 1e-4 * cfg.p0)
        cols_b.append(np.zeros_like(a))
        cols_c.append(np.zeros_like(a))
        caps.append(dark)
    a_all, b_all, cap_all = np.hstack(cols_a), np.hstack(cols_b), np.hstack(caps)
    plan = water_fill(a_all, b_all, cap_all, total, np.hstack(cols_c))
    if coupled(cfg):
        plan = coupled_fill(cfg, a_all, b_all, cap_all, total, plan, volume, dark is not None)
    return plan[:, :n], (plan[:, n + 1 :] if dark is not None else np.zeros_like(a))


def coupled_fill(
    cfg: ExecConfig,
    a: np.ndarray,
    b: np.ndarray,
    cap: np.ndarray,
    total: np.ndarray,
    start: np.ndarray,
    volume: np.ndarray,
    has_dark: bool,
    iterations: int = 300,
) -> np.ndarray:
    """The small convex solve where the problem does not separate (batched over episodes).

    Minimises the separable part ``sum a z + b z^2`` of the columns [lit slices | deadline |
    dark slices] plus the participation-change penalty and the risk term on the holdings after
    each slice, subject to ``0 <= z <= cap`` and ``sum z = total``, by accelerated projected
    gradient (FISTA) from the separable solution ``start``; the projection onto the capped
    simplex is itself a water-filling. A convex quadratic programme, so it converges to the
    minimum; ``iterations`` bounds the work (tests check it against a generic solver).
    """
    n = volume.shape[1]
    inv_v = 1.0 / volume
    w = cfg.participation_change_penalty * cfg.notional / 1e4
    r = cfg.risk_aversion * cfg.sigma_dollars**2 * cfg.dt

    def grad(z: np.ndarray) -> np.ndarray:
        g = a + 2 * b * z
        if w:
            du = np.diff(z[:, :n] * inv_v, axis=1)
            g[:, 1:n] += 2 * w * du * inv_v[:, 1:]
            g[:, : n - 1] -= 2 * w * du * inv_v[:, :-1]
        if r:
            traded = z[:, :n] + (z[:, n + 1 :] if has_dark else 0.0)
            held = total[:, None] - np.cumsum(traded, axis=1)[:, : n - 1]  # after slices 0..n-2
            pull = np.zeros((len(z), n))
            pull[:, : n - 1] = -2 * r * np.cumsum(held[:, ::-1], axis=1)[:, ::-1]
            g[:, :n] += pull
            if has_dark:
                g[:, n + 1 :] += pull
        return g

    lipschitz = 2 * b.max(axis=1) + 8 * w * (inv_v**2).max(axis=1) + 2 * r * n * n * (2 if has_dark else 1)
    step = (1.0 / lipschitz)[:, None]
    half = np.full_like(b, 0.5)

    def project(y: np.ndarray) -> np.ndarray:
        return water_fill(-y, half, cap, total, iterations=48)

    z, y, t = start, start, 1.0
    for _ in range(iterations):
        z_next = project(y - step * grad(y))
        t_next = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = z_next + ((t - 1) / t_next) * (z_next - z)
        z, t = z_next, t_next
    return z


def conditional_liquidity(cfg: ExecConfig, market: Market, t: int | np.ndarray) -> dict[str, np.ndarray]:
    """What the model expects of the slices still to come given the current slice's observed
    volume and spread (the current slice itself is the observed value).

    With ``t`` an int (every episode at slice ``t``) the arrays are ``(B, T - t)``: slices
    ``t..T-1``. With ``t`` a ``(B,)`` array (episodes at different slices) they are ``(B, T)``
    over all slices, and ``past`` marks the slices before each episode's own ``t`` (their values
    are placeholders: a planner caps them at 0).

    - ``inv_volume``: ``E[1/V_k]`` (the expected temporary cost of a fixed trade is linear in it),
    - ``volume_low``: a conservative volume for the cap (one conditional SD below the median),
    - ``volume``: ``E[V_k]``, and ``half_spread``: ``E[half-spread_k]``.
    """
    B = len(market)
    rows = np.arange(B)
    if np.ndim(t) == 0:
        n, t0 = cfg.T - int(t), np.full(B, int(t))
        k = np.broadcast_to(np.arange(n)[None, :], (B, n))
        now = np.zeros(B, dtype=np.int64)  # the current slice's column
        profile = np.broadcast_to(volume_profile(cfg)[int(t) :][None, :], (B, n))
    else:
        n, t0 = cfg.T, np.asarray(t, dtype=np.int64)
        k = np.maximum(np.arange(n)[None, :] - t0[:, None], 0)
        now = t0
        profile = np.broadcast_to(volume_profile(cfg)[None, :], (B, n))
    mean_v = cfg.vol_mu * profile
    mean_now = mean_v[rows, now]
    v_now, s_now = market.volume[rows, t0], market.half_spread[rows, t0]
    if cfg.volume_model == "log_ar1":
        s2 = stationary_var(cfg.volume_phi, cfg.volume_innov_sd)
        z = np.log(v_now / mean_now) + 0.5 * s2  # the AR state now
        pk = cfg.volume_phi**k
        cond_mean, cond_var = pk * z[:, None], s2 * (1 - pk**2)
        volume = mean_v * np.exp(cond_mean + 0.5 * cond_var - 0.5 * s2)
        inv_volume = np.exp(0.5 * s2 - cond_mean + 0.5 * cond_var) / mean_v
        volume_low = mean_v * np.exp(cond_mean - 0.5 * s2 - np.sqrt(cond_var))
    else:
        volume = mean_v.copy()
        inv_volume = 1.0 / mean_v
        volume_low = mean_v.copy()
    base = cfg.spread_bps * 1e-4 * cfg.p0
    if cfg.spread_model == "log_ar1":
        s2 = stationary_var(cfg.spread_phi, cfg.spread_innov_sd)
        y = np.log(s_now / base) + 0.5 * s2
        pk = cfg.spread_phi**k
        spread = base * np.exp(pk * y[:, None] - 0.5 * s2 * pk**2)
    else:
        spread = np.full((B, n), base)
    for arr, value in ((volume, v_now), (volume_low, v_now), (spread, s_now)):
        arr[rows, now] = value
    inv_volume[rows, now] = 1.0 / v_now
    # the predictable mid: what is known now plus the signal's expected future drift
    step = cfg.signal_strength * cfg.p0 * cfg.sigma * np.sqrt(cfg.dt) * cfg.signal_phi ** np.arange(cfg.T + 1)
    later = np.concatenate([[0.0], np.cumsum(step)])  # drifts of the next 0, 1, ... slices
    added = later[k + 1] - later[1] if cfg.shock_before_trade else later[k]
    mid_sched = market.mid_sched[rows, t0][:, None] + added * market.signal[rows, t0][:, None]
    out = {
        "volume": volume,
        "volume_low": volume_low,
        "inv_volume": inv_volume,
        "half_spread": spread,
        "mid_sched": mid_sched,
    }
    if np.ndim(t) != 0:
        out["past"] = np.arange(n)[None, :] < t0[:, None]
    return out


def expected_dark(
    cfg: ExecConfig, volume: np.ndarray, volume_low: np.ndarray, now: np.ndarray | None = None
) -> np.ndarray:
    """The MPC's dark capacity: the mean for the slice at hand (posting more costs nothing), and
    for later slices a conservative one, one log-SD below the median (relying on hidden
    liquidity that may not come leaves inventory for the deadline). ``now``: each row's current
    column (default 0)."""
    sd = cfg.dark_log_sd
    cap = cfg.dark_share * volume_low * np.exp(-0.5 * sd**2 - sd)
    rows = np.arange(len(cap))
    col = np.zeros(len(cap), dtype=np.int64) if now is None else now
    cap[rows, col] = cfg.dark_share * volume[rows, col]
    return cap


def mpc_orders(
    cfg: ExecConfig, market: Market, state: State, per_row: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """The adaptive MPC's orders ``(lit shares, dark order or None)`` for every episode of a
    batch at its own current slice (episodes need not be in lockstep: the batched env's are not).

    Episodes at one slice are planned over the slices left; at different slices, over all ``T``
    slices with the past ones capped at 0 (the same plan), except where the slices are coupled
    (a risk term or the participation-change penalty), which plans each slice's group apart.
    ``per_row=True`` plans over all ``T`` slices even in lockstep, so that each episode's orders
    do not depend on the rest of the batch (a residual on the MPC: the batched env then
    reproduces the single env bit for bit).
    """
    require_support(cfg)
    t = np.minimum(state.t, cfg.T - 1)
    live = t[~state.done]
    lockstep = len(live) == 0 or bool(np.all(live == live[0]))
    separable = not coupled(cfg) and cfg.risk_aversion == 0
    if not lockstep and not separable:
        lit, dark = np.zeros(len(t)), np.zeros(len(t))
        for slice_t in np.unique(t):
            rows = np.flatnonzero(t == slice_t)
            sub = State(**{f.name: getattr(state, f.name)[rows] for f in fields(State)})
            sub.t = np.full(len(rows), slice_t)
            lit[rows], dark_rows = mpc_orders(cfg, market.take(rows), sub)
            if dark_rows is not None:
                dark[rows] = dark_rows
        return lit, (dark if cfg.dark_venue else None)
    at: int | np.ndarray = t if (per_row and separable) or not lockstep else int(live[0]) if len(live) else 0
    if cfg.risk_aversion > 0 and not coupled(cfg):
        return risk_schedule(cfg, state.x, int(at))[:, 0], (np.zeros(len(t)) if cfg.dark_venue else None)
    ex = conditional_liquidity(cfg, market, at)
    past = ex.get("past")
    col = np.zeros(len(t), dtype=np.int64) if past is None else t
    # expected cost of a planned trade: E[1/V] in the impact; caps at a conservative volume
    a, b, c = schedule_cost_coefficients(cfg, 1.0 / ex["inv_volume"], ex["half_spread"], ex["mid_sched"])
    lit, dark = plan_with_deadline(
        cfg,
        a,
        b,
        c,
        ex["volume_low"],
        ex["mid_sched"],
        state.x,
        inv_volume_sq=ex["inv_volume"] ** 2,
        dark=expected_dark(cfg, ex["volume"], ex["volume_low"], col) if cfg.dark_venue else None,
        past=past,
    )
    rows = np.arange(len(t))
    return lit[rows, col], (dark[rows, col] if cfg.dark_venue else None)
