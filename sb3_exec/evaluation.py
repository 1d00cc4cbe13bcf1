"""The one rollout loop for every policy, and paired statistics over seeded episodes.

``evaluate`` runs named policies (baselines, trained models acting through their own action
interfaces, run folders, any ``Policy``) on the same seeded episodes of one market; ``Evaluation``
holds the episodes and computes the paired statistics (``summary``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sb3_exec import dynamics
from sb3_exec.analytic import analytic_optimum_bps
from sb3_exec.baselines import Policy
from sb3_exec.config import ExecConfig, make_config
from sb3_exec.market import Market, draw_market
from sb3_exec.policies import as_policy
from sb3_exec.rng import as_seeds

SUMMARY_METRICS = ("shortfall_bps", "objective_bps", "schedule_objective_bps")
PAIRED_METRICS = ("objective_bps", "schedule_objective_bps")


def config_from_kwargs(env_kwargs: Mapping[str, Any] | ExecConfig | None) -> ExecConfig:
    """The config that ``gymnasium.make("sb3_exec/Execution-v0", **env_kwargs)`` would build."""
    if isinstance(env_kwargs, ExecConfig):
        return env_kwargs
    kwargs = dict(env_kwargs or {})
    return make_config(kwargs.pop("preset", "seed"), **kwargs)


def rollout(
    cfg: ExecConfig, policy: Policy, market: Market, trajectories: bool = False
) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
    """Run ``policy`` on every episode of ``market`` to the end, all episodes in lockstep.

    :return: per-episode metrics (``dynamics.episode_metrics``) and, if ``trajectories``, one
        dict of ``(B,)`` arrays per slice
    """
    state = dynamics.initial_state(cfg, len(market))
    policy.reset(cfg, market)
    steps: list[dict[str, np.ndarray]] = []
    trade = dynamics.kernel(cfg, dynamics.ARRAY)
    for t in range(cfg.T):
        if state.done.all():
            break
        out = policy.act(cfg, market, state)
        orders = [np.asarray(o, dtype=np.float64).reshape(-1) for o in (out if isinstance(out, tuple) else (out,))]
        for shares in orders:
            if shares.shape != (len(market),) or not np.isfinite(shares).all():
                raise ValueError(
                    f"policy {policy!r} returned shares of shape {shares.shape} with "
                    f"{np.count_nonzero(~np.isfinite(shares))} non-finite values at slice {t}; "
                    f"expected {len(market)} finite numbers"
                )
        active = ~state.done
        res = dynamics.step(cfg, market, state, orders[0], orders[1] if len(orders) > 1 else None, trade)
        if trajectories:
            steps.append(
                {
                    "slice": np.full(len(market), t),
                    "active": active,
                    "q_exec": res.q,
                    "px_exec": res.px,
                    "mid": res.mid,
                    "part": res.part,
                    "q_rem": state.x.copy(),
                    "cost": res.cost,
                    "schedule_cost": res.sched_cost,
                    "risk": res.risk,
                    "dark_fill": res.dark_fill * np.ones(len(market)),
                }
            )
    return dynamics.episode_metrics(cfg, state), steps


@dataclass
class Evaluation:
    """Episodes of several policies on the same seeds; ``summary`` gives paired statistics."""

    episodes: pd.DataFrame  # a row per policy and seed
    steps: pd.DataFrame | None  # a row per policy, seed and slice (trajectories=True)
    config: ExecConfig
    optimum_bps: float | None  # the analytic optimum of the expected objective, where known
    # a policy's own prediction of its schedule objective per episode, bps (the DP's J_0)
    predicted: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(
        self,
        reference: str = "twap",
        confidence: float = 0.95,
        n_resamples: int = 2000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """Per policy: means with bootstrap CIs, SDs, paired differences to ``reference``.

        Columns, for ``m`` in ``shortfall_bps``, ``objective_bps``, ``schedule_objective_bps``:
        ``m`` (mean), ``m_lo``/``m_hi`` (CI), ``m_sd``; for ``objective_bps`` and
        ``schedule_objective_bps`` also ``diff_m`` (mean of policy minus reference on the same
        episode, negative = better) with ``diff_m_lo``/``diff_m_hi`` and ``win_rate_m`` (share
        of episodes with a lower value than the reference, ties counted half); where the model
        has an analytic optimum, ``regret_m`` (mean minus optimum, bps) and ``regret_m_pct`` (the
        same as a share of the optimum);
        where an ``oracle`` policy was evaluated, ``gap_closed_pct`` (with ``_lo``/``_hi``): the
        share of the reference-to-oracle gap in mean schedule objective that the policy closes
        (absent where the reference is as good as the oracle: no gap).

        The execution literature's metrics against the reference (Ning, Lin & Jaimungal 2018):
        ``median_diff_m`` (the median paired difference) and ``gain_loss_m`` (the mean gain over
        the mean loss, on the episodes where the policy beats / trails the reference; ``inf``
        where it never trails, NaN for the reference itself).

        Where the causal optimum ``dp`` was evaluated: ``regret_dp_bps`` (with ``_lo``/``_hi``),
        the paired mean of the policy's schedule objective minus the optimum's, and
        ``gap_closed_dp_pct`` (with a CI), the share of the reference-to-optimum gap the policy
        closes. ``predicted_schedule_objective_bps``: a policy's own prediction of its mean
        (the DP's value at each episode's initial state).

        CIs are percentile bootstraps (``scipy.stats.bootstrap``) seeded by ``seed``.
        """
        if reference not in set(self.episodes["policy"]):
            raise ValueError(
                f"reference: {reference!r} is not an evaluated policy; have {sorted(set(self.episodes['policy']))}"
            )
        wide = {m: self.episodes.pivot(index="seed", columns="policy", values=m) for m in SUMMARY_METRICS}
        rng = np.random.default_rng(seed)
        rng_dp = np.random.default_rng([seed, 1])  # its own stream: the other CIs stay as they were
        rows = []
        for name in pd.unique(self.episodes["policy"]):
            row: dict[str, Any] = {"policy": name, "episodes": len(wide["objective_bps"][name])}
            for m in SUMMARY_METRICS:
                values = wide[m][name].to_numpy()
                row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean_ci(values, confidence, n_resamples, rng)
                row[f"{m}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            for m in PAIRED_METRICS:
                diff = (wide[m][name] - wide[m][reference]).to_numpy()
                row[f"diff_{m}"], row[f"diff_{m}_lo"], row[f"diff_{m}_hi"] = mean_ci(diff, confidence, n_resamples, rng)
                row[f"win_rate_{m}"] = float(np.mean(diff < 0) + 0.5 * np.mean(diff == 0))
                row[f"median_diff_{m}"] = float(np.median(diff))
                row[f"gain_loss_{m}"] = gain_loss(diff)
                if self.optimum_bps is not None:
                    row[f"regret_{m}"] = row[m] - self.optimum_bps
                    row[f"regret_{m}_pct"] = 100 * (row[m] - self.optimum_bps) / self.optimum_bps
            sched = wide["schedule_objective_bps"]
            if (
                "oracle" in sched
                and name not in (reference, "oracle")
                and sched[reference].mean() - sched["oracle"].mean() > 1e-9
            ):  # a gap to close
                row["gap_closed_pct"], row["gap_closed_pct_lo"], row["gap_closed_pct_hi"] = gap_closed(
                    wide["schedule_objective_bps"][reference].to_numpy(),
                    wide["schedule_objective_bps"][name].to_numpy(),
                    wide["schedule_objective_bps"]["oracle"].to_numpy(),
                    confidence,
                    n_resamples,
                    rng,
                )
            if "dp" in sched:
                regret = (sched[name] - sched["dp"]).to_numpy()
                row["regret_dp_bps"], row["regret_dp_bps_lo"], row["regret_dp_bps_hi"] = mean_ci(
                    regret, confidence, n_resamples, rng_dp
                )
                if name not in (reference, "dp") and sched[reference].mean() - sched["dp"].mean() > 1e-9:
                    row["gap_closed_dp_pct"], row["gap_closed_dp_pct_lo"], row["gap_closed_dp_pct_hi"] = gap_closed(
                        sched[reference].to_numpy(),
                        sched[name].to_numpy(),
                        sched["dp"].to_numpy(),
                        confidence,
                        n_resamples,
                        rng_dp,
                    )
            if name in self.predicted:
                row["predicted_schedule_objective_bps"] = float(np.mean(self.predicted[name]))
            row["completion"] = float(self.episodes.loc[self.episodes["policy"] == name, "completion"].mean())
            rows.append(row)
        return pd.DataFrame(rows).set_index("policy")


def mean_ci(
    values: np.ndarray, confidence: float, n_resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Mean and its percentile-bootstrap CI (a zero-width CI for constant data)."""
    mean = float(np.mean(values))
    if len(values) < 2 or np.ptp(values) <= 1e-12 * max(1.0, abs(mean)):
        return mean, mean, mean
    res = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=rng,
        batch=max(1, 2_000_000 // len(values)),
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def gain_loss(diff: np.ndarray) -> float:
    """Mean gain over mean loss of paired differences (negative = a gain): ``inf`` where nothing
    is lost, NaN where nothing differs."""
    gains, losses = -diff[diff < 0], diff[diff > 0]
    if len(losses) == 0:
        return float("inf") if len(gains) else float("nan")
    return float(gains.mean() / losses.mean()) if len(gains) else 0.0


def gap_closed(
    reference: np.ndarray,
    policy: np.ndarray,
    oracle: np.ndarray,
    confidence: float,
    n_resamples: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Share (%) of the reference-to-oracle gap a policy closes, with a paired bootstrap CI
    (episodes resampled jointly for the three policies)."""

    def stat(r: np.ndarray, p: np.ndarray, o: np.ndarray, axis: int = -1) -> np.ndarray:
        return 100 * (r.mean(axis) - p.mean(axis)) / (r.mean(axis) - o.mean(axis))

    value = float(stat(reference, policy, oracle))
    if not np.isfinite(value) or len(reference) < 2:
        return value, value, value
    res = stats.bootstrap(
        (reference, policy, oracle),
        stat,
        paired=True,
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=rng,
        batch=max(1, 1_000_000 // len(reference)),
    )
    return value, float(res.confidence_interval.low), float(res.confidence_interval.high)


def evaluate(
    policies: Mapping[str, Any],
    env_kwargs: Mapping[str, Any] | ExecConfig | None = None,
    seeds: Iterable[int] = range(1000),
    trajectories: bool = False,
) -> Evaluation:
    """Run named policies over the same seeded episodes (common random numbers).

    :param policies: name -> a ``Policy``, a baseline name (``"twap"``...), an SB3 model (it acts
        through the action interface it was trained in: ``policies.ModelPolicy``) or the path of
        a run folder written by ``sb3_exec.train``/``experiments.compare``
    :param env_kwargs: the market: what ``gymnasium.make("sb3_exec/Execution-v0", **env_kwargs)``
        takes, ``preset`` and any config override (an ``ExecConfig`` is accepted too). Its
        ``reward`` is irrelevant (both objectives are reported); its ``action_mode`` is used only
        by models that carry no interface of their own
    :param seeds: episode seeds; episode ``s`` is the env's ``reset(seed=s)``
    :param trajectories: also return a row per policy, seed and slice in ``.steps``
    """
    cfg = config_from_kwargs(env_kwargs)
    if not policies:
        raise ValueError("policies: give at least one policy")
    resolved = {str(name): as_policy(p) for name, p in policies.items()}
    seed_arr = as_seeds(list(seeds))
    if len(np.unique(seed_arr)) != len(seed_arr):
        raise ValueError("seeds: episode seeds must be distinct")
    market = draw_market(cfg, seed_arr)
    episode_frames, step_frames = [], []
    predicted: dict[str, np.ndarray] = {}
    for name, policy in resolved.items():
        metrics, steps = rollout(cfg, policy, market, trajectories)
        if hasattr(policy, "predicted_bps"):
            predicted[name] = policy.predicted_bps(cfg, market)
        episode_frames.append(pd.DataFrame({"policy": name, "seed": seed_arr, **metrics}))
        for s in steps:
            frame = pd.DataFrame({"policy": name, "seed": seed_arr, **s})
            step_frames.append(frame[frame.pop("active")])
    episodes = pd.concat(episode_frames, ignore_index=True)
    steps_df = pd.concat(step_frames, ignore_index=True) if trajectories else None
    return Evaluation(episodes, steps_df, cfg, analytic_optimum_bps(cfg), predicted)
