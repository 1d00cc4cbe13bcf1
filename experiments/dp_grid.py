"""Grid convergence of the causal optimum: the default grid against its refinements.

    python -m experiments.dp_grid --preset lob                # results/dp_grid/lob.{md,csv}
    python -m experiments.dp_grid --preset liquidity --together

Solves the DP (``sb3_exec.dp``) at a preset's default grid and at each refinement (one grid field
at a time; with ``--together`` also all of them at once), runs every solution on the same held-out
evaluation episodes and reports, per refinement, the paired mean of (refined - default) schedule
objective with its 95% CI, the simulated and predicted means and the solve time. The default is
converged where every refinement's CI lies within the tolerance (0.01 bps on ``liquidity``, 0.05
on ``lob``: the causal-optimum issue). Solutions are cached as ``dp.solve`` caches them, so a
second run only simulates.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sb3_exec import dp, evaluate, make_config
from sb3_exec.baselines import DP
from sb3_exec.market import draw_market
from sb3_exec.rng import as_seeds
from sb3_exec.seeding import evaluation_seeds

# each grid field and how a refinement changes it (None: the field is left alone)
REFINE: dict[str, Any] = {
    "inventory": lambda v: 2 * v - 1,  # halves the spacing, keeps the nodes
    "volume": lambda v: 2 * v - 1 if v > 1 else None,
    "spread": lambda v: 2 * v - 1 if v > 1 else None,
    "signal": lambda v: 2 * v - 1 if v > 1 else None,
    "quadrature": lambda v: v + 4,
    "dark": lambda v: 2 * v,
    "scan": lambda v: 2 * v - 1,
    "bisection": lambda v: 2 * v,
    # a midpoint between each two multiples and one more above the largest
    "dark_orders": lambda v: tuple(sorted({*v, *((a + b) / 2 for a, b in itertools.pairwise(v)), 1.5 * max(v)})),
}


def _label(value: Any) -> str:
    return f"{len(value)} multiples" if isinstance(value, tuple) else str(value)


def _used(cfg: Any, grid: dp.Grid) -> dict[str, bool]:
    """Which refinable fields a config's DP uses (a state that does not move has one node)."""
    volume, spread = len(dp.volume_factor(cfg, grid).nodes) > 1, len(dp.spread_factor(cfg, grid).nodes) > 1
    dark = bool(cfg.dark_venue)
    return {
        "inventory": True,
        "volume": volume,
        "spread": spread,
        "signal": cfg.signal_strength > 0,
        "quadrature": volume or spread or cfg.signal_strength > 0,
        "dark": dark,
        "scan": dark,
        "bisection": True,
        "dark_orders": dark,
    }


def refinements(cfg: Any, grid: dp.Grid, fields: list[str] | None = None, together: bool = False) -> dict[str, dp.Grid]:
    """Named refinements of ``grid``: each field of ``fields`` (default: every field the config
    uses) refined alone, and with ``together`` one with all of them at once.

    :raises ValueError: for a field that is not refined here or that the config does not use
    """
    used = _used(cfg, grid)
    for name in fields or []:
        if name not in REFINE:
            raise ValueError(f"fields: {name!r} is not refined by this command (it refines {', '.join(REFINE)})")
        if not used[name]:
            raise ValueError(f"fields: {name!r} does not apply to this config (its DP has no such state or control)")
    out: dict[str, dp.Grid] = {}
    changes: dict[str, Any] = {}
    for name in fields or [f for f in REFINE if used[f]]:
        new = REFINE[name](getattr(grid, name))
        out[f"{name} {_label(getattr(grid, name))} -> {_label(new)}"] = dataclasses.replace(grid, **{name: new})
        changes[name] = new
    if together and len(changes) > 1:
        out["all of them"] = dataclasses.replace(grid, **changes)
    return out


def check(preset: str, episodes: int, fields: list[str] | None, together: bool = False) -> dict[str, dp.Grid]:
    """The grids to compare, the default first, once the inputs are valid.

    :raises ValueError: naming the input that is wrong
    """
    cfg = make_config(preset)
    reason = dp.unsupported(cfg)
    if reason is not None:
        raise ValueError(f"preset: the DP does not support {preset!r}: {reason}")
    if not isinstance(episodes, int) or episodes < 2:
        raise ValueError(f"episodes must be an integer >= 2, got {episodes!r}")
    default = dp.default_grid(cfg)
    return {"default": default, **refinements(cfg, default, fields, together)}


def run(
    preset: str, episodes: int, fields: list[str] | None = None, together: bool = False, progress: bool = True
) -> pd.DataFrame:
    """One row per grid (the default first): size, solve time, simulated and predicted means, and
    the paired difference to the default with its 95% CI (t interval over the episodes).

    :raises ValueError: as ``check``, before anything is solved
    """
    grids = check(preset, episodes, fields, together)
    cfg = make_config(preset)
    seeds = evaluation_seeds(episodes)
    market = draw_market(cfg, as_seeds(seeds))
    rows, base = [], None
    for name, grid in grids.items():
        start = time.perf_counter()
        policy = DP(grid, progress=progress)
        sol = policy.solution(cfg)  # solved, or loaded with the time its solve took
        ev = evaluate({"dp": policy}, cfg, seeds)
        sim = ev.episodes.sort_values("seed").schedule_objective_bps.to_numpy()
        base = sim if base is None else base
        diff = sim - base
        half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)) if name != "default" else 0.0
        rows.append(
            {
                "grid": name,
                # the sizes in use (a state that does not move has one node)
                "inventory": grid.inventory,
                "volume": len(sol.volume.nodes),
                "spread": len(sol.spread.nodes),
                "signal": len(sol.signal.nodes),
                "quadrature": grid.quadrature,
                **({"dark": grid.dark, "scan": grid.scan} if cfg.dark_venue else {"dark": 0, "scan": 0}),
                "bisection": grid.bisection,
                "dark_orders": len(grid.dark_orders) if cfg.dark_venue else 0,  # multiples; and "everything"
                "solve_s": round(sol.seconds, 1),
                "wall_s": round(time.perf_counter() - start, 1),
                "simulated_bps": sim.mean(),
                "predicted_bps": float(policy.predicted_bps(cfg, market).mean()),
                "diff_bps": diff.mean(),
                "diff_lo": diff.mean() - half,
                "diff_hi": diff.mean() + half,
            }
        )
    return pd.DataFrame(rows)


def verdict(df: pd.DataFrame, tolerance: float) -> tuple[float, str]:
    """The largest move of the mean (point estimate) and the verdict: ``converged`` where every
    refinement's 95% CI lies within +-tolerance, ``NOT converged`` where one's point estimate is
    outside it, ``inconclusive`` between (more episodes would tell); ``nothing refined`` with
    only the default."""
    moves = df.iloc[1:]
    if moves.empty:
        return 0.0, "nothing refined"
    bounds = moves[["diff_lo", "diff_hi"]].abs().to_numpy()
    if not np.isfinite(bounds).all():
        raise ValueError("a refinement's paired difference is not finite")
    worst = float(moves.diff_bps.abs().max())
    if bounds.max() < tolerance:
        return worst, "converged"
    return worst, "NOT converged" if worst >= tolerance else "inconclusive"


def markdown(df: pd.DataFrame, preset: str, episodes: int, tolerance: float) -> str:
    worst, word = verdict(df, tolerance)
    lines = [
        f"# DP grid convergence on `{preset}`",
        "",
        f"`python -m experiments.dp_grid --preset {preset} --episodes {episodes}`: the default grid "
        f"and its refinements on the same {episodes:,} held-out evaluation episodes (schedule "
        "objective, bps; difference = refined - default on each episode, 95% CI; solve s: one "
        "core as measured when solved, with whatever else ran; dark orders: multiples of the "
        'expected dark liquidity, and "everything" besides).',
        "",
        "| grid | inventory x volume x spread x signal | quadrature | dark nodes | dark orders | scan | bisection "
        "| solve s | simulated | predicted J_0 | refined - default [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.grid} | {r.inventory} x {r.volume} x {r.spread} x {r.signal} | {r.quadrature} | {r.dark} "
            f"| {r.dark_orders} | {r.scan} | {r.bisection} | {r.solve_s:.0f} | {r.simulated_bps:.4f} "
            f"| {r.predicted_bps:.4f} | {r.diff_bps:+.4f} [{r.diff_lo:+.4f}, {r.diff_hi:+.4f}] |"
        )
    lines += [
        "",
        f"Largest move of the mean: {worst:.4f} bps; tolerance {tolerance} bps for every 95% CI: {word}.",
        "",
    ]
    return "\n".join(lines)


TOLERANCE = {"liquidity": 0.01, "lob": 0.05}
EPISODES = {"liquidity": 20_000, "lob": 5_000}  # those of results/dp_grid


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.dp_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="lob", help="a preset the DP supports (default: lob)")
    p.add_argument(
        "--episodes", type=int, help="held-out evaluation episodes (default: 20000 liquidity, 5000 lob, else 2000)"
    )
    p.add_argument(
        "--fields", nargs="+", help=f"grid fields to refine (default: all the preset uses of {' '.join(REFINE)})"
    )
    p.add_argument("--together", action="store_true", help="also refine every field at once (slow on lob)")
    p.add_argument(
        "--tolerance", type=float, help="bps each refinement's CI must stay within (default: 0.01 liquidity, 0.05 lob)"
    )
    p.add_argument("--out", type=Path, default=Path("results/dp_grid"), help="folder for <preset>.md and .csv")
    args = p.parse_args(argv)
    episodes = args.episodes if args.episodes is not None else EPISODES.get(args.preset, 2000)
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE.get(args.preset, 0.05)
    if not (np.isfinite(tolerance) and tolerance > 0):
        p.exit(2, f"error: tolerance must be a positive number of bps, got {tolerance}\n")
    try:
        check(args.preset, episodes, args.fields, args.together)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    df = run(args.preset, episodes, args.fields, args.together)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / f"{args.preset}.csv", index=False)
    text = markdown(df, args.preset, episodes, tolerance)
    (args.out / f"{args.preset}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
