"""Tables, figures and the report of a comparison (statistics here are pure functions of frames)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from experiments.figures import figures
from sb3_exec.evaluation import Evaluation

METRICS = ("objective_bps", "schedule_objective_bps")


def iqm_ci(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Interquartile mean over runs with a percentile-bootstrap CI (rliable's aggregate; with a
    single task the stratified bootstrap is the plain bootstrap over runs)."""
    values = np.asarray(values, dtype=float)
    iqm = float(stats.trim_mean(values, 0.25))
    if len(values) < 2 or np.ptp(values) == 0:
        return iqm, iqm, iqm
    res = stats.bootstrap(
        (values,),
        lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return iqm, float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(
    baseline_eval: Evaluation, agent_episodes: Sequence[pd.DataFrame], results: Sequence[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary table (a row per policy) and every episode of every policy and run.

    An agent's paired statistics use, per evaluation episode, its mean over training seeds;
    ``iqm_*`` aggregate the per-run means, and ``p_improve_twap_*`` is the share of runs whose
    mean is below TWAP's (ties half).
    """
    runs = pd.concat(agent_episodes, ignore_index=True) if agent_episodes else pd.DataFrame()
    per_episode = [baseline_eval.episodes]
    if len(runs):
        numeric = [c for c in baseline_eval.episodes.columns if c not in ("policy", "seed")]
        per_episode.append(runs.groupby(["policy", "seed"], sort=False)[numeric].mean().reset_index())
    combined = Evaluation(
        pd.concat(per_episode, ignore_index=True),
        None,
        baseline_eval.config,
        baseline_eval.optimum_bps,
        baseline_eval.predicted,
    )
    summary = combined.summary(reference="twap")
    if "adaptive" in summary.index:  # the strongest classical opponent: every policy paired with it
        vs = combined.summary(reference="adaptive")
        m = "schedule_objective_bps"
        for suffix in ("", "_lo", "_hi"):
            summary[f"vs_adaptive_{m}{suffix}"] = vs[f"diff_{m}{suffix}"]
        summary[f"win_rate_vs_adaptive_{m}"] = vs[f"win_rate_{m}"]
    summary.insert(0, "kind", ["agent" if p in set(runs.get("policy", [])) else "baseline" for p in summary.index])
    twap = summary.loc["twap"]
    for agent, g in runs.groupby("policy", sort=False) if len(runs) else ():
        run_means = g.groupby("run_seed")[list(METRICS)].mean()
        summary.loc[agent, "runs"] = len(run_means)
        for m in METRICS:
            iqm, lo, hi = iqm_ci(run_means[m].to_numpy())
            summary.loc[agent, [f"iqm_{m}", f"iqm_{m}_lo", f"iqm_{m}_hi"]] = [iqm, lo, hi]
            better = (run_means[m] < twap[m]).mean() + 0.5 * (run_means[m] == twap[m]).mean()
            summary.loc[agent, f"p_improve_twap_{m}"] = float(better)
    for agent in {r["agent"] for r in results}:
        mine = [r for r in results if r["agent"] == agent]
        if agent not in summary.index:  # every run failed: keep a row that says so
            summary.loc[agent, "kind"] = "agent"
        summary.loc[agent, "failed_runs"] = sum(r["status"] != "ok" for r in mine)
    episodes = pd.concat([baseline_eval.episodes.assign(run_seed=pd.NA), runs], ignore_index=True)
    return summary, episodes


def _count(x: Any) -> int:
    return int(x) if x is not None and pd.notna(x) else 0


def _num(x: float, digits: int) -> str:
    return f"{x + 0.0:.{digits}f}".replace("-0." + "0" * digits, "0." + "0" * digits)


def _fmt(row: pd.Series, key: str, digits: int) -> str:
    """A number of the row to ``digits`` decimals, or ``n/a`` where it is missing (every blank
    cell of the tables reads ``n/a``, never ``nan``)."""
    value = row.get(key)
    return _num(value, digits) if value is not None and pd.notna(value) else "n/a"


def _fmt_ci(row: pd.Series, m: str, digits: int = 2) -> str:
    if pd.isna(row.get(m)):
        return "n/a"
    return f"{_num(row[m], digits)} [{_num(row[f'{m}_lo'], digits)}, {_num(row[f'{m}_hi'], digits)}]"


def main_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The headline table: objective and schedule objective with CIs, paired to TWAP."""
    rows = []
    for policy, r in summary.iterrows():
        row = {
            "policy": policy,
            "objective bps [95% CI]": _fmt_ci(r, "objective_bps"),
            "SD": _fmt(r, "objective_bps_sd", 1),
            "vs TWAP [95% CI]": _fmt_ci(r, "diff_objective_bps"),
            "schedule objective bps [95% CI]": _fmt_ci(r, "schedule_objective_bps", 3),
            "schedule vs TWAP [95% CI]": _fmt_ci(r, "diff_schedule_objective_bps", 3),
            "win rate": _fmt(r, "win_rate_schedule_objective_bps", 2),
        }
        if "regret_dp_bps" in summary:
            row["regret vs causal optimum [95% CI]"] = _fmt_ci(r, "regret_dp_bps", 3)
            row["TWAP-to-optimum gap closed % [95% CI]"] = _fmt_ci(r, "gap_closed_dp_pct", 1)
        if "gap_closed_pct" in summary:
            row["TWAP-to-oracle gap closed % [95% CI]"] = _fmt_ci(r, "gap_closed_pct", 1)
        if "regret_schedule_objective_bps_pct" in summary:
            row["regret %"] = _fmt(r, "regret_schedule_objective_bps_pct", 3)
        rows.append(row)
    return pd.DataFrame(rows)


def agent_table(summary: pd.DataFrame, results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per agent: how it learned (``learning``: from scratch or model-assisted), the checkpoint
    evaluated (``checkpoint``: final or best validation), IQM over training
    runs with CIs, P(improve on TWAP), the paired difference to the adaptive MPC (where it runs)
    with its CI and win rate, failures, time.

    (Wall times live here and in metadata.json, not in summary.csv, which is reproducible.)"""
    rows = []
    for policy, r in summary[summary.kind == "agent"].iterrows():
        secs = [x["train_seconds"] for x in results if x["agent"] == policy and x["status"] == "ok"]
        learning = {x["learning"] for x in results if x["agent"] == policy and "learning" in x}
        checkpoint = {x["checkpoint"] for x in results if x["agent"] == policy and "checkpoint" in x}
        rows.append(
            {
                "agent": policy,
                "learning": ", ".join(sorted(learning)) or "n/a",
                "checkpoint": ", ".join(sorted(checkpoint)) or "n/a",
                "runs ok": _count(r.get("runs")),
                "failed": _count(r.get("failed_runs")),
                "IQM schedule objective [95% CI]": _fmt_ci(r, "iqm_schedule_objective_bps", 3),
                "P(improve on TWAP)": _fmt(r, "p_improve_twap_schedule_objective_bps", 2),
                **(
                    {
                        "schedule vs Adaptive [95% CI]": _fmt_ci(r, "vs_adaptive_schedule_objective_bps", 3),
                        "win rate vs Adaptive": _fmt(r, "win_rate_vs_adaptive_schedule_objective_bps", 2),
                    }
                    if "vs_adaptive_schedule_objective_bps" in summary
                    else {}
                ),
                **(
                    {"regret vs causal optimum [95% CI]": _fmt_ci(r, "regret_dp_bps", 3)}
                    if "regret_dp_bps" in summary
                    else {}
                ),
                "train s/run": f"{np.mean(secs):.0f}" if secs else "n/a",
            }
        )
    return pd.DataFrame(rows)


def gap_split(summary: pd.DataFrame) -> str | None:
    """One sentence on how the TWAP-to-oracle gap splits into what a causal policy can reach
    (TWAP to the causal optimum) and the value of foresight (the optimum to the oracle), and the
    DP's own prediction beside its simulated mean; None without ``dp`` and ``oracle``."""
    if not {"twap", "dp", "oracle"} <= set(summary.index):
        return None
    m = "schedule_objective_bps"
    twap, dp, oracle = (summary.loc[p, m] for p in ("twap", "dp", "oracle"))
    gap = twap - oracle
    if gap <= 1e-9:
        return None
    dp_row = summary.loc["dp"]
    text = (
        f"Of the TWAP-to-oracle gap of {gap:.3f} bps, {twap - dp:.3f} bps ({100 * (twap - dp) / gap:.1f}%) "
        f"is reachable by a causal policy (TWAP to the causal optimum, `dp`) and {dp - oracle:.3f} bps "
        f"({100 * (dp - oracle) / gap:.1f}%) is the value of foresight (the optimum to the oracle, "
        f"which knows the episode's liquidity in advance)."
    )
    if pd.notna(dp_row.get("predicted_schedule_objective_bps")):
        text += (
            f" The DP predicts its own mean at {dp_row['predicted_schedule_objective_bps']:.3f} bps; "
            f"simulated: {_fmt_ci(dp_row, m, 3)} bps."
        )
    return text


def defined_agents(definitions: Sequence[dict[str, Any]]) -> list[str]:
    """Report lines naming the agents the config defines (class or factory, interface), if any."""
    if not definitions:
        return []
    items = [
        f"`{d['name']}`: `{d.get('algo') or d.get('factory')}` on `{d['action_mode']}`"
        + (f" ({d['description']})" if d.get("description") else "")
        for d in definitions
    ]
    return ["Agents defined in the config: " + "; ".join(items) + ".", ""]


def markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def write_outputs(
    out: Path,
    cfg: Any,
    summary: pd.DataFrame,
    episodes: pd.DataFrame,
    baseline_eval: Evaluation,
    results: Sequence[dict[str, Any]],
    meta: dict[str, Any],
) -> None:
    """summary.csv, episodes.csv, figures, report.md and a console table."""
    _atomic_csv(summary.reset_index(), out / "summary.csv")
    _atomic_csv(episodes, out / "episodes.csv")
    made = figures(out, summary, episodes, baseline_eval, results)
    table = main_table(summary)
    agents_ = agent_table(summary, results)
    failed = [r for r in results if r["status"] != "ok"]
    optimum = baseline_eval.optimum_bps
    lines = [
        f"# Comparison `{cfg.name}`: preset `{cfg.preset}`",
        "",
        f"Agents {', '.join(cfg.agents)} ({cfg.seeds} training seeds each, budget "
        f"{cfg.timesteps or 'per agent YAML'} steps) against {', '.join(cfg.baselines)}, on "
        f"{cfg.eval_episodes} seeded evaluation episodes shared by every policy (master seed "
        f"{cfg.master_seed}). Objective = implementation shortfall plus the risk term, in basis "
        f"points of arrival notional; lower is better."
        + (f" Analytic optimum: {optimum:.3f} bps." if optimum is not None else ""),
        "",
        *defined_agents([d for d in getattr(cfg, "agent_definitions", []) if d["name"] in cfg.agents]),
        "The *schedule objective* prices the same trades on the same episode with the "
        "unpredictable price moves set to zero: for any policy that cannot see the future it has "
        "the same expectation as the realized objective, but without the price noise, so its "
        "confidence intervals are far narrower and small differences between schedules show.",
        "",
        "## All policies",
        "",
        "Agents: per episode, the mean over their training seeds. Paired differences and win "
        "rates (schedule objective, ties half) are against TWAP on the same episodes.",
        "",
        markdown(table),
        "",
    ]
    split = gap_split(summary)
    if split:
        lines += [split, ""]
    if len(agents_):
        lines += [
            "## Agents over training seeds",
            "",
            "*Learning*: `from scratch` where the agent's action, observation and reward hold "
            "no baseline's or planner's output; `model-assisted` where they do (a residual on "
            "a baseline's trade). *Checkpoint*: `final`, the model at the end of training; `best`, "
            "the one with the lowest validation score (validation episodes are disjoint from these).",
            "",
            markdown(agents_),
            "",
        ]
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{r['agent']}` seed {r['seed']}: {r['error']}" for r in failed] + [""]
    lines += ["## Figures", ""] + [f"### {cap}\n\n![{cap}]({name})\n" for name, cap in made]
    lines += [
        "",
        f"Wall time {meta['wall_seconds']:.0f} s. TensorBoard: "
        f"`tensorboard --logdir {out}/runs`. Full config: `config.yaml`, seeds: `seeds.json`, "
        "versions and commit: `metadata.json`.",
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "summary_table.txt").write_text(
        table.to_string(index=False) + "\n\n" + (agents_.to_string(index=False) if len(agents_) else "")
    )


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.10g")
    tmp.replace(path)


__all__ = [
    "agent_table",
    "defined_agents",
    "figures",
    "gap_split",
    "iqm_ci",
    "main_table",
    "markdown",
    "summarize",
    "write_outputs",
]
