"""The figures of a comparison: each a function of the summary, the episodes and the runs.

Written so that each can be read: policies that sit on the same point share one label, an axis
is not stretched by one far-off policy (a zoomed panel shows the differences that matter), many
policies are split into groups rather than drawn in a dozen similar hues, and the Almgren-Chriss
closed form is drawn only on the markets it solves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sb3_exec.analytic import ACModel, ac_model, closed_form_exact
from sb3_exec.config import ExecConfig
from sb3_exec.evaluation import Evaluation

METRICS = ("objective_bps", "schedule_objective_bps")
REFERENCES = ("ac", "adaptive", "oracle", "dp")  # the yardsticks (closed form, MPC, bounds)


def clusters(x: np.ndarray, y: np.ndarray, tol: Sequence[float]) -> list[list[int]]:
    """Indices of points grouped when they lie within ``tol`` of each other on both axes (chained:
    a point joins the group of any member it is that close to), in order of first appearance."""
    groups: list[list[int]] = []
    for i in range(len(x)):
        near = [g for g in groups if any(abs(x[i] - x[j]) <= tol[0] and abs(y[i] - y[j]) <= tol[1] for j in g)]
        merged = [i] + [j for g in near for j in g]
        groups = [g for g in groups if g not in near] + [sorted(merged)]
    return sorted(groups, key=lambda g: g[0])


def spread_out(values: Sequence[float], gap: float) -> np.ndarray:
    """Positions as close to ``values`` as possible but at least ``gap`` apart (label placement:
    pushed apart from the middle of each crowded run, order kept)."""
    v = np.asarray(values, dtype=float)
    order = np.argsort(v, kind="stable")
    pos = v[order].copy()
    for _ in range(len(pos)):
        moved = False
        for k in range(1, len(pos)):
            overlap = gap - (pos[k] - pos[k - 1])
            if overlap > 1e-12:
                pos[k - 1] -= overlap / 2
                pos[k] += overlap / 2
                moved = True
        if not moved:
            break
    out = np.empty_like(pos)
    out[order] = pos
    return out


def inside_fences(values: np.ndarray, k: float = 1.5) -> np.ndarray:
    """Which values lie inside Tukey's fences (``k`` IQRs beyond the quartiles): the rest are the
    outliers that would set an axis' range on their own."""
    q1, q3 = np.nanpercentile(values, [25, 75])
    iqr = q3 - q1
    return (values >= q1 - k * iqr) & (values <= q3 + k * iqr)


def zoom_reference(summary: pd.DataFrame) -> tuple[str, str] | None:
    """The best causal yardstick to measure the policies against up close, and its column
    prefix: the causal optimum ``dp``, else the adaptive MPC; None where neither ran."""
    if "regret_dp_bps" in summary and "dp" in summary.index:
        return "dp", "regret_dp_bps"
    if "vs_adaptive_schedule_objective_bps" in summary:
        return "adaptive", "vs_adaptive_schedule_objective_bps"
    return None


def zoom_policies(summary: pd.DataFrame, column: str) -> list[str]:
    """The policies near the reference: within 1.2x the farthest agent (or, without agents, the
    median distance), so that the agents' differences, not a far-off baseline, set the scale."""
    d = summary[column].dropna()
    agents = [p for p in d.index if summary.loc[p, "kind"] == "agent"]
    scale = d[agents].abs().max() if agents else d.abs().median()
    limit = 1.2 * max(float(scale), 1e-6)
    return [p for p in d.index if abs(d[p]) <= limit]


def policy_groups(summary: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Policies in the groups the inventory figure draws apart: baselines, yardsticks, agents."""
    names = list(summary.index)
    agents = [p for p in names if summary.loc[p, "kind"] == "agent"]
    refs = [p for p in names if p in REFERENCES and p not in agents]
    base = [p for p in names if p not in agents and p not in refs]
    groups = [("schedules", base), ("yardsticks: closed form, MPC, oracle, causal optimum", refs), ("agents", agents)]
    return [(title, members) for title, members in groups if members]


def _policy_paths(baseline_eval: Evaluation, results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Mean inventory (share of Q0) and participation per slice for every policy."""
    cfg = baseline_eval.config
    steps = baseline_eval.steps
    grid = pd.MultiIndex.from_product([pd.unique(steps.policy), range(cfg.T)], names=["policy", "slice"])
    base = steps.pivot_table(index=["policy", "slice"], values=["q_rem", "part"], aggfunc="sum")
    n = steps.groupby("policy").seed.nunique()
    base = base.reindex(grid, fill_value=0.0).reset_index()
    base[["q_rem", "part"]] = base[["q_rem", "part"]].div(base.policy.map(n), axis=0)
    frames = [base.assign(run=0)]
    for r in results:
        if r["status"] == "ok":
            k = len(r["inventory"])
            frames.append(
                pd.DataFrame(
                    {
                        "policy": r["agent"],
                        "slice": range(k),
                        "run": r["seed"],
                        "q_rem": r["inventory"],
                        "part": r["participation"],
                    }
                )
            )
    paths = pd.concat(frames, ignore_index=True)
    start = paths.drop_duplicates(["policy", "run"]).assign(slice=-1, q_rem=cfg.Q0, part=np.nan)
    paths = pd.concat([start, paths], ignore_index=True)
    paths["slices done"] = paths.slice + 1
    paths["inventory"] = paths.q_rem / cfg.Q0
    return paths


def figures(
    out: Path,
    summary: pd.DataFrame,
    episodes: pd.DataFrame,
    baseline_eval: Evaluation,
    results: Sequence[dict[str, Any]],
) -> list[tuple[str, str]]:
    """Write the PNG figures; returns (file, caption) pairs for the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    made: list[tuple[str, str]] = []
    order = list(summary.index)

    # learning curves with a band across training seeds
    curves = pd.DataFrame(
        [
            {"agent": r["agent"], "seed": r["seed"], **v}
            for r in results
            if r["status"] == "ok"
            for v in r.get("validation", [])
        ]
    )
    if len(curves):
        fig, ax = plt.subplots(figsize=(7, 4))
        sns.lineplot(
            curves, x="timesteps", y="schedule_objective_bps", hue="agent", errorbar=("pi", 100), marker="o", ax=ax
        )
        twap = summary.loc["twap", "schedule_objective_bps"]
        lows = [curves.schedule_objective_bps.min()]
        if baseline_eval.optimum_bps is not None:
            ax.axhline(baseline_eval.optimum_bps, color="black", ls=":", label="analytic optimum")
            lows.append(baseline_eval.optimum_bps)
        elif "oracle" in summary.index:
            ax.axhline(summary.loc["oracle", "schedule_objective_bps"], color="black", ls="-.", label="oracle")
            lows.append(summary.loc["oracle", "schedule_objective_bps"])
        if "adaptive" in summary.index and baseline_eval.optimum_bps is None:
            ax.axhline(summary.loc["adaptive", "schedule_objective_bps"], color="grey", ls=":", label="adaptive (MPC)")
        high = curves.schedule_objective_bps.max()
        pad = 0.1 * (high - min(lows)) + 1e-3
        if twap <= high + pad:
            ax.axhline(twap, color="grey", ls="--", label="TWAP")
        ax.set_ylim(min(lows) - pad, high + pad)
        ax.set_ylabel("validation schedule objective (bps)")
        ax.legend(fontsize=8)
        ax.set_title(f"Learning curves (band: range over training seeds; TWAP at {twap:.2f} bps)")
        made.append(_save(fig, out / "learning_curves.png", "Validation score during training"))

    # distributions of the realized shortfall
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(order) + 1.5))
    sns.boxplot(episodes, x="shortfall_bps", y="policy", order=order, showfliers=False, ax=ax)
    ax.set_xlabel("implementation shortfall (bps), every evaluation episode (and run)")
    made.append(_save(fig, out / "shortfall_distributions.png", "Shortfall distributions per policy"))

    made.append(_paired_differences(out, summary, plt))
    made.append(_inventory_paths(out, summary, baseline_eval, results, plt))
    made.append(_efficient_frontier(out, summary, episodes, baseline_eval.config, plt))
    return made


def _errorbars(ax: Any, summary: pd.DataFrame, policies: list[str], column: str) -> None:
    d = summary.loc[policies, column]
    err = np.vstack([d - summary.loc[policies, f"{column}_lo"], summary.loc[policies, f"{column}_hi"] - d])
    ax.errorbar(d, range(len(policies)), xerr=err, fmt="o", capsize=4)
    ax.axvline(0, color="grey", ls="--")
    ax.set_yticks(range(len(policies)), policies)
    ax.invert_yaxis()


def _paired_differences(out: Path, summary: pd.DataFrame, plt: Any) -> tuple[str, str]:
    """Differences to TWAP (an outlier is drawn at the edge with its value) and, up close, to the
    best causal yardstick for the policies near it."""
    order = list(summary.index)
    zoom = zoom_reference(summary)
    panels = 3 if zoom else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 0.45 * len(order) + 1.8))
    for ax, m, title in zip(axes, METRICS, ("realized objective", "schedule objective"), strict=False):
        column = f"diff_{m}"
        _errorbars(ax, summary, order, column)
        d = summary[column].to_numpy()
        inside = inside_fences(d) | np.isnan(d)  # a failed agent has no point to place
        if not inside.all():  # one far-off policy would squash everyone else's differences
            lo = np.minimum(np.nanmin(summary[f"{column}_lo"].to_numpy()[inside]), 0)
            hi = np.maximum(np.nanmax(summary[f"{column}_hi"].to_numpy()[inside]), 0)
            pad = 0.08 * (hi - lo) + 1e-6
            ax.set_xlim(lo - pad, hi + pad)
            for i in np.flatnonzero(~inside):
                edge = hi + pad if d[i] > hi else lo - pad
                right = d[i] > hi
                ax.annotate(
                    f"{d[i]:+.0f} {'>' if right else '<'}",
                    (edge, i),
                    xytext=(-4 if right else 4, 0),
                    textcoords="offset points",
                    ha="right" if right else "left",
                    va="center",
                    fontsize=8,
                    color="firebrick",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none"),
                )
        ax.set_xlabel(f"{title} minus TWAP (bps), 95% CI")
    if zoom:
        ref, column = zoom
        near = zoom_policies(summary, column)
        _errorbars(axes[2], summary, near, column)
        axes[2].set_xlabel(f"schedule objective minus {ref} (bps), 95% CI")
        axes[2].set_title(f"up close: the {len(near)} policies near {ref}", fontsize=10)
    return _save(
        fig,
        out / "paired_differences.png",
        "Paired differences to TWAP on the same episodes (negative is better; a far-off "
        "policy is marked at the edge)" + (f", and up close to {zoom[0]}" if zoom else ""),
    )


def _inventory_paths(
    out: Path, summary: pd.DataFrame, baseline_eval: Evaluation, results: Sequence[dict[str, Any]], plt: Any
) -> tuple[str, str]:
    """Mean inventory and participation per slice, a row per group of policies, TWAP in each."""
    from matplotlib.ticker import MaxNLocator

    cfg = baseline_eval.config
    paths = _policy_paths(baseline_eval, results)
    groups = policy_groups(summary)
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 2.9 * len(groups) + 0.4), squeeze=False, sharex="col")
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    twap = paths[(paths.policy == "twap") & (paths.run == 0)]
    closed_form = closed_form_exact(cfg)
    for (title, members), (ax_inv, ax_part) in zip(groups, axes, strict=True):
        for ax, x, y in ((ax_inv, "slices done", "inventory"), (ax_part, "slice", "part")):
            if "twap" not in members:
                ax.plot(twap[x], twap[y], color="0.6", lw=3, alpha=0.5, label="twap")
            for k, policy in enumerate(members):
                mean = paths[paths.policy == policy].groupby(x)[y].mean().dropna()
                ax.plot(
                    mean.index,
                    mean.to_numpy(),
                    ls=styles[k % len(styles)],
                    marker=markers[k % len(markers)],
                    markersize=4,
                    color=f"C{k}",
                    label=policy,
                )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if closed_form and "ac" not in members:
            ax_inv.plot(np.arange(cfg.T + 1), ac_model(cfg).holdings() / cfg.Q0, "k:", label="AC closed form")
        ax_inv.set_ylabel("inventory left / Q0")
        ax_part.set_ylabel("participation q/V")
        ax_inv.set_title(title, fontsize=10, loc="left")
        ax_inv.legend(fontsize=8, ncol=2)
    axes[-1][0].set_xlabel("slices done")
    axes[-1][1].set_xlabel("slice")
    return _save(
        fig,
        out / "inventory_paths.png",
        "Mean inventory and participation per slice, by group of policies (TWAP in grey)",
    )


def _efficient_frontier(
    out: Path, summary: pd.DataFrame, episodes: pd.DataFrame, cfg: ExecConfig, plt: Any
) -> tuple[str, str]:
    """Mean against SD of the shortfall; policies on one point share a label; the closed-form
    frontier only where the model is the exact Almgren-Chriss model."""
    stats_ = episodes.groupby("policy").shortfall_bps.agg(["mean", "std"]).reindex(summary.index).dropna()
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(stats_["std"], stats_["mean"], zorder=3)
    frontier = frontier_bps(cfg)
    if frontier is not None:
        ax.plot(frontier[1], frontier[0], "k:", label="AC efficient frontier (closed form)")
        ax.legend(fontsize=8, loc="upper right")
    sd, mean = stats_["std"].to_numpy(), stats_["mean"].to_numpy()
    span = np.array([np.ptp(sd), np.ptp(mean)]) + 1e-9
    groups = clusters(sd, mean, 0.015 * span)
    names = [", ".join(stats_.index[i] for i in g) for g in groups]
    anchor_x = np.array([sd[g].mean() for g in groups])
    anchor_y = np.array([mean[g].mean() for g in groups])
    label_y = spread_out(anchor_y, 0.055 * span[1])
    right = anchor_x < sd.min() + 0.6 * span[0]  # labels to the right, except near the right edge
    for name, x0, y0, y1, r in zip(names, anchor_x, anchor_y, label_y, right, strict=True):
        ax.annotate(
            name,
            (x0, y0),
            xytext=(x0 + (0.06 if r else -0.06) * span[0], y1),
            ha="left" if r else "right",
            va="center",
            fontsize=8,
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85),
            arrowprops=dict(arrowstyle="-", color="0.5", lw=0.6),
        )
    ax.set_xlim(sd.min() - 0.1 * span[0], sd.max() + 0.1 * span[0])
    ax.set_xlabel("SD of shortfall (bps)")
    ax.set_ylabel("mean shortfall (bps)")
    return _save(
        fig,
        out / "efficient_frontier.png",
        "Mean against SD of shortfall" + (" with the closed-form frontier" if frontier is not None else ""),
    )


def frontier_bps(cfg: ExecConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, SD) of the shortfall in bps of the Almgren-Chriss schedule over a range of risk
    aversions: the efficient frontier, where the config is the exact Almgren-Chriss model (None
    elsewhere: on other markets the closed form is not a frontier of anything)."""
    if not closed_form_exact(cfg):
        return None
    model = ac_model(cfg)
    if model.sigma == 0 or model.eta_tilde <= 0:
        return None
    lam0 = model.lam if model.lam > 0 else model.eta_tilde / (model.sigma**2 * (model.N * model.tau) ** 2)
    es, sds = [], []
    for lam in lam0 * np.logspace(-3, 1.5, 40):
        m = ACModel(**{**model.__dict__, "lam": lam})
        x = m.holdings()
        es.append(m.expected_cost(x))
        sds.append(np.sqrt(m.variance(x)))
    return np.array(es) / cfg.notional * 1e4, np.array(sds) / cfg.notional * 1e4


def _save(fig: Any, path: Path, caption: str) -> tuple[str, str]:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name, caption


__all__ = [
    "clusters",
    "figures",
    "frontier_bps",
    "inside_fences",
    "policy_groups",
    "spread_out",
    "zoom_policies",
    "zoom_reference",
]
