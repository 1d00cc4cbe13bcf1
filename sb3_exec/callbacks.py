"""SB3 callbacks for execution agents, usable in any ``model.learn(callback=...)``.

- ``ExecutionMetricsCallback``: execution metrics of every finished training episode;
- ``SeededEvalCallback``: periodic evaluation on fixed validation seeds through
  ``sb3_exec.evaluate`` (paired with TWAP), saving the best model, with an inventory figure;
- ``HParamCallback``: the run's hyperparameters in TensorBoard's HPARAMS tab.

TensorBoard tags: ``execution/{shortfall_bps, objective_bps, schedule_objective_bps, completion,
mean_participation, regret_bps}``, ``eval/{objective_bps, schedule_objective_bps,
diff_twap_objective_bps, diff_twap_schedule_bps, win_rate_twap, regret_pct, best_schedule_bps}``
and the figure ``eval/inventory``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam, Image, TensorBoardOutputFormat

from sb3_exec.analytic import analytic_optimum_bps
from sb3_exec.evaluation import config_from_kwargs, evaluate

EPISODE_KEYS = ("shortfall_bps", "objective_bps", "schedule_objective_bps", "completion", "mean_participation")
TB_ONLY = ("stdout", "log", "json", "csv")


class ExecutionMetricsCallback(BaseCallback):
    """Record the mean over finished training episodes of ``execution/*`` metrics.

    ``execution/regret_bps`` is the episode's schedule objective minus the analytic optimum,
    where the env's model has one (``sb3_exec.analytic_optimum_bps``).
    """

    def _on_training_start(self) -> None:
        cfg = self.training_env.get_attr("cfg", indices=[0])[0]
        self._optimum = analytic_optimum_bps(cfg)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            if "objective_bps" not in info:
                continue
            for key in EPISODE_KEYS:
                self.logger.record_mean(f"execution/{key}", info[key])
            if self._optimum is not None:
                self.logger.record_mean("execution/regret_bps", info["schedule_objective_bps"] - self._optimum)
        return True


class SeededEvalCallback(BaseCallback):
    """Evaluate the model every ``eval_freq`` steps on fixed validation seeds, paired with TWAP.

    Unlike SB3's ``EvalCallback`` every evaluation replays the same seeded episodes, so
    successive scores differ only by the policy. The best model (lowest mean schedule objective)
    is saved to ``best_model_save_path/best_model.zip``.

    :param env_kwargs: the evaluation env's options (preset, overrides, action mode)
    :param seeds: validation episode seeds (keep them disjoint from training and test seeds;
        see ``sb3_exec.seeding.validation_seeds``)
    :param eval_freq: evaluate every this many environment steps (summed over envs)
    :param best_model_save_path: folder for ``best_model.zip``; None saves nothing
    :param figure_every: log the inventory figure every this many evaluations (0: never)
    """

    def __init__(
        self,
        env_kwargs: Mapping[str, Any],
        seeds: Sequence[int],
        eval_freq: int = 5000,
        best_model_save_path: str | Path | None = None,
        figure_every: int = 1,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be >= 1, got {eval_freq}")
        self.cfg = config_from_kwargs(env_kwargs)
        self.seeds = list(seeds)
        self.eval_freq = eval_freq
        self.best_model_save_path = Path(best_model_save_path) if best_model_save_path else None
        self.figure_every = figure_every
        self.best_score = np.inf
        self.history: list[dict[str, float]] = []
        self._optimum = analytic_optimum_bps(self.cfg)
        self._next = eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.eval_freq
            self.run_evaluation()
        return True

    def run_evaluation(self) -> dict[str, float]:
        """Evaluate now; log, remember and return the scores."""
        policies = {"agent": self.model, "twap": "twap"}
        s = evaluate(policies, self.cfg, self.seeds).summary(n_resamples=200).loc["agent"]
        scores = {
            "objective_bps": s["objective_bps"],
            "schedule_objective_bps": s["schedule_objective_bps"],
            "diff_twap_objective_bps": s["diff_objective_bps"],
            "diff_twap_schedule_bps": s["diff_schedule_objective_bps"],
            "win_rate_twap": s["win_rate_schedule_objective_bps"],
        }
        if self._optimum is not None:
            scores["regret_pct"] = s["regret_schedule_objective_bps_pct"]
        for key, value in scores.items():
            self.logger.record(f"eval/{key}", float(value))
        if scores["schedule_objective_bps"] < self.best_score:
            self.best_score = float(scores["schedule_objective_bps"])
            if self.best_model_save_path is not None:
                self.best_model_save_path.mkdir(parents=True, exist_ok=True)
                self.model.save(self.best_model_save_path / "best_model")
        self.logger.record("eval/best_schedule_bps", self.best_score)
        self.history.append({"timesteps": self.num_timesteps, **{k: float(v) for k, v in scores.items()}})
        writes_tb = any(isinstance(f, TensorBoardOutputFormat) for f in self.logger.output_formats)
        if writes_tb and self.figure_every and len(self.history) % self.figure_every == 0:
            self.logger.record("eval/inventory", self.inventory_image(), exclude=TB_ONLY)
        # written now, at this step (as SB3's EvalCallback does): left to the algorithm's next dump,
        # a second evaluation before it would overwrite this one, and the last evaluation of an
        # off-policy run (dumped at episode ends only) would never be written
        self.logger.dump(self.num_timesteps)
        if self.verbose:
            print(f"[eval @ {self.num_timesteps}] " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items()))
        return scores

    def inventory_image(self) -> Image:
        """The inventory figure rendered to an image (the figure is closed at once: SB3 keeps
        only the last record between two log dumps)."""
        import matplotlib.pyplot as plt

        fig = self.inventory_figure()
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        plt.close(fig)
        return Image(pixels, "HWC")

    def inventory_figure(self) -> Any:
        """The agent's inventory path on the first validation seed against TWAP and AC."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ev = evaluate({"agent": self.model, "twap": "twap", "ac": "ac"}, self.cfg, self.seeds[:1], trajectories=True)
        assert ev.steps is not None  # trajectories=True
        fig, ax = plt.subplots(figsize=(5, 3))
        for name, g in ev.steps.groupby("policy", sort=False):
            ax.plot(np.r_[0, g.slice + 1], np.r_[1.0, g.q_rem / self.cfg.Q0], marker=".", label=name)
        ax.set_xlabel("slice")
        ax.set_ylabel("inventory left / Q0")
        ax.legend()
        fig.tight_layout()
        return fig


class HParamCallback(BaseCallback):
    """Log the algorithm's hyperparameters (SB3 ``HParam``) at the start of training."""

    KEYS = (
        "learning_rate",
        "gamma",
        "gae_lambda",
        "n_steps",
        "batch_size",
        "n_epochs",
        "ent_coef",
        "buffer_size",
        "learning_starts",
        "train_freq",
        "target_update_interval",
        "exploration_fraction",
        "exploration_final_eps",
        "seed",
    )

    def __init__(self, extra: Mapping[str, Any] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.extra = dict(extra or {})

    def _on_training_start(self) -> None:
        hparams: dict[str, Any] = {"algorithm": type(self.model).__name__}
        for key in self.KEYS:
            value = getattr(self.model, key, None)
            if isinstance(value, (int, float, str, bool)):
                hparams[key] = value
            elif value is not None:
                hparams[key] = str(value)
        hparams.update({k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.extra.items()})
        metrics = {"eval/schedule_objective_bps": 0.0, "execution/objective_bps": 0.0}
        self.logger.record("hparams", HParam(hparams, metrics), exclude=TB_ONLY)

    def _on_step(self) -> bool:
        return True
