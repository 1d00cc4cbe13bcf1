"""Grid convergence of the causal optimum: the default grid against its refinements.

    python -m experiments.dp_grid --preset lob                 # results/dp_grid/lob.{md,csv}
    python -m experiments.dp_grid --preset liquidity --episodes 20000

Solves the DP (``sb3_exec.dp``) at a preset's default grid and at each refinement (one grid field
at a time, then all of them together), runs every solution on the same held-out evaluation
episodes and reports, per refinement, the paired mean of (refined - default) schedule objective
with its 95% CI, the simulated and predicted means and the solve time. The default is converged
where no refinement moves the mean by more than the tolerance (0.01 bps on ``liquidity``, 0.05 on
``lob``: the causal-optimum issue). Solutions are cached as ``dp.solve`` caches them, so a second
run only simulates.
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
    # a midpoint between each two multiples and one more above the largest
    "dark_orders": lambda v: tuple(sorted({*v, *((a + b) / 2 for a, b in itertools.pairwise(v)), 1.5 * max(v)})),
}


def _label(value: Any) -> str:
    return f"{len(value)} multiples" if isinstance(value, tuple) else str(value)


def refinements(cfg: Any, grid: dp.Grid, fields: list[str] | None = None, together: bool = False) -> dict[str, dp.Grid]:
    """Named refinements of ``grid``: each field of ``fields`` (default: every field the config
    uses) refined alone, and with ``together`` one with all of them at once."""
    moving = len(dp.volume_factor(cfg, grid).nodes) > 1 or len(dp.spread_factor(cfg, grid).nodes) > 1
    used = {
        "quadrature": moving or cfg.signal_strength > 0,
        "volume": len(dp.volume_factor(cfg, grid).nodes) > 1,
        "spread": len(dp.spread_factor(cfg, grid).nodes) > 1,
        "signal": cfg.signal_strength > 0,
        "dark": bool(cfg.dark_venue),
        "scan": bool(cfg.dark_venue),
        "dark_orders": bool(cfg.dark_venue),
    }
    out: dict[str, dp.Grid] = {}
    changes: dict[str, Any] = {}
    for name in fields or list(REFINE):
        if name not in REFINE:
            raise ValueError(f"fields: {name!r} is not a refinable grid field ({', '.join(REFINE)})")
        new = REFINE[name](getattr(grid, name))
        if new is None or not used.get(name, True):
            continue
        out[f"{name} {_label(getattr(grid, name))} -> {_label(new)}"] = dataclasses.replace(grid, **{name: new})
        changes[name] = new
    if together and len(changes) > 1:
        out["all of them"] = dataclasses.replace(grid, **changes)
    return out


def run(
    preset: str, episodes: int, fields: list[str] | None = None, together: bool = False, progress: bool = True
) -> pd.DataFrame:
    """One row per grid (the default first): size, solve time, simulated and predicted means, and
    the paired difference to the default with its 95% CI (t interval over the episodes)."""
    cfg = make_config(preset)
    reason = dp.unsupported(cfg)
    if reason is not None:
        raise ValueError(f"preset: the DP does not support {preset!r}: {reason}")
    if episodes < 2:
        raise ValueError(f"episodes must be at least 2, got {episodes}")
    default = dp.default_grid(cfg)
    grids = {"default": default, **refinements(cfg, default, fields, together)}
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
                "dark_orders": len(grid.dark_orders) + 1 if cfg.dark_venue else 0,  # and "everything"
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


def markdown(df: pd.DataFrame, preset: str, episodes: int, tolerance: float) -> str:
    worst = df.diff_bps.abs().max()
    lines = [
        f"# DP grid convergence on `{preset}`",
        "",
        f"`python -m experiments.dp_grid --preset {preset} --episodes {episodes}`: the default grid "
        f"and its refinements on the same {episodes:,} held-out evaluation episodes (schedule "
        "objective, bps; difference = refined - default on each episode, 95% CI; solve s: one "
        "core as measured when solved).",
        "",
        "| grid | inventory x volume x spread x signal | quadrature | dark nodes | dark orders | scan | solve s "
        "| simulated | predicted J_0 | refined - default [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        lines.append(
            f"| {r.grid} | {r.inventory} x {r.volume} x {r.spread} x {r.signal} | {r.quadrature} | {r.dark} "
            f"| {r.dark_orders} | {r.scan} | {r.solve_s:.0f} | {r.simulated_bps:.4f} | {r.predicted_bps:.4f} "
            f"| {r.diff_bps:+.4f} [{r.diff_lo:+.4f}, {r.diff_hi:+.4f}] |"
        )
    verdict = "converged" if worst < tolerance else "NOT converged"
    lines += ["", f"Largest move of the mean: {worst:.4f} bps (tolerance {tolerance} bps): {verdict}.", ""]
    return "\n".join(lines)


TOLERANCE = {"liquidity": 0.01, "lob": 0.05}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.dp_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="lob", help="a preset the DP supports (default: lob)")
    p.add_argument("--episodes", type=int, default=2000, help="held-out evaluation episodes (default: 2000)")
    p.add_argument(
        "--fields", nargs="+", help=f"grid fields to refine (default: all the preset uses: {' '.join(REFINE)})"
    )
    p.add_argument("--together", action="store_true", help="also refine every field at once (slow on lob)")
    p.add_argument(
        "--tolerance", type=float, help="bps a refinement may move the mean (default: 0.01 liquidity, 0.05 lob)"
    )
    p.add_argument("--out", type=Path, default=Path("results/dp_grid"), help="folder for <preset>.md and .csv")
    args = p.parse_args(argv)
    try:
        df = run(args.preset, args.episodes, args.fields, args.together)
    except ValueError as e:
        p.exit(2, f"error: {e}\n")
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE.get(args.preset, 0.05)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / f"{args.preset}.csv", index=False)
    text = markdown(df, args.preset, args.episodes, tolerance)
    (args.out / f"{args.preset}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
