"""Hyperparameter search for one agent on one preset with Optuna (the rl-baselines3-zoo pattern).

    python -m experiments.tune --agent ppo_frac --preset ac60 --trials 30
    python -m experiments.tune --agent dqn --preset ac2000 --trials 20 --save

A seeded TPE sampler proposes hyperparameters (the first trial of a new study is the agent's
current defaults, so the study says how far the search improved on them); each trial trains the agent and scores it every
fifth of its budget on the mean schedule objective over validation seeds only (never the
evaluation seeds of ``experiments.compare``); a median pruner stops trials that lag. The study
lives in ``<out>/study.db`` (SQLite): run the command again to resume it, or open it with
``optuna-dashboard sqlite:///<out>/study.db``. The best hyperparameters are written as YAML
(``<out>/best.yml``) ready to paste into ``sb3_exec/agents/hyperparams/<agent>.yml``; ``--save``
writes them there under the preset's key. Optuna is an optional extra:
``pip install -e ".[tune]"``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from sb3_exec import agents
from sb3_exec.actions import BOX_MODES
from sb3_exec.callbacks import SeededEvalCallback
from sb3_exec.config import PRESETS
from sb3_exec.seeding import validation_seeds
from sb3_exec.train import CLIParser

DQN_LIKE = ("dqn", "ddqn", "qrdqn")


def sample_params(trial: Any, agent: str, preset: str) -> dict[str, Any]:
    """Hyperparameters proposed by the trial for the agent's family (and its interface on the
    preset: a box interface adds the initial log-SD)."""
    lr = trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
    if agent in DQN_LIKE:
        return {
            "learning_rate": lr,
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
            "target_update_interval": trial.suggest_categorical("target_update_interval", [100, 500, 1000]),
            "exploration_fraction": trial.suggest_float("exploration_fraction", 0.1, 0.5),
            "train_freq": trial.suggest_categorical("train_freq", [1, 4]),
        }
    # the residual agent steps 64 envs (the MPC plans them as one batch): shorter rollouts
    mode = agents.env_kwargs_for(agent, preset)["action_mode"]
    rollouts = [16, 40, 80] if mode == "residual" else [16, 64, 128, 256, 512]
    params = {
        "learning_rate": lr,
        "n_steps": trial.suggest_categorical("n_steps", rollouts),
        "gae_lambda": trial.suggest_float("gae_lambda", 0.8, 1.0),
        "ent_coef": trial.suggest_float("ent_coef", 1e-6, 1e-2, log=True),
    }
    if agent != "a2c":
        params["n_epochs"] = trial.suggest_int("n_epochs", 3, 20)
        params["batch_size"] = trial.suggest_categorical("batch_size", [64, 128, 256])
    if mode in BOX_MODES:
        params["policy_kwargs"] = {"net_arch": [64, 64], "log_std_init": trial.suggest_float("log_std_init", -3.0, 0.0)}
    return params


class TrialEvalCallback(SeededEvalCallback):
    """``SeededEvalCallback`` that reports each score to the trial and stops pruned trials."""

    def __init__(self, trial: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trial = trial
        self.pruned = False

    def _on_step(self) -> bool:
        if self.num_timesteps < self._next:
            return True
        self._next += self.eval_freq
        score = self.run_evaluation()["schedule_objective_bps"]
        self.trial.report(score, len(self.history))
        if self.trial.should_prune():
            self.pruned = True
            return False
        return True


def objective(trial: Any, agent: str, preset: str, timesteps: int, seeds: list[int], seed: int) -> float:
    """Train with the trial's hyperparameters; the mean validation schedule objective (bps)."""
    import optuna
    import torch

    torch.set_num_threads(1)
    params = sample_params(trial, agent, preset)
    env = agents.make_env(agent, preset, seed=seed)
    model = agents.make(agent, env, seed=seed, preset=preset, **params)
    callback = TrialEvalCallback(
        trial, agents.env_kwargs_for(agent, preset), seeds, eval_freq=max(1, timesteps // 5), figure_every=0
    )
    model.learn(timesteps, callback=callback)
    if callback.pruned:
        raise optuna.TrialPruned()
    return float(callback.history[-1]["schedule_objective_bps"]) if callback.history else float("inf")


def best_yaml(study: Any, agent: str, preset: str) -> dict[str, Any]:
    """The best trial's hyperparameters, keyed by preset (the hyperparams file's layout)."""
    params = sample_params(_Fixed(study.best_trial.params), agent, preset)
    return {preset: params}


class _Fixed:
    """Replays a finished trial's parameters through ``sample_params``."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def __getattr__(self, name: str) -> Any:
        if name.startswith("suggest_"):
            return lambda key, *args, **kwargs: self.params[key]
        raise AttributeError(name)


class _Recorder:
    """Records what ``sample_params`` asks of a trial: each name's range or choices."""

    def __init__(self) -> None:
        self.space: dict[str, tuple[str, Any]] = {}

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.space[name] = ("range", (low, high))
        return low

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.space[name] = ("range", (low, high))
        return low

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        self.space[name] = ("choices", choices)
        return choices[0]


def default_trial(agent: str, preset: str) -> dict[str, Any]:
    """The agent's current YAML defaults as a trial of the search space (numbers clipped into
    their ranges; a categorical default the space lacks is left to the sampler), so that the
    study's first trial measures the defaults on the same validation episodes."""
    recorder = _Recorder()
    sample_params(recorder, agent, preset)
    params = agents.hyperparams(agent, preset)
    params = {**params, **(params.get("policy_kwargs") or {})}
    trial: dict[str, Any] = {}
    for name, (kind, spec) in recorder.space.items():
        if name not in params:
            continue
        value = params[name]
        if kind == "range":
            trial[name] = type(spec[0])(min(max(value, spec[0]), spec[1]))
        elif value in spec:
            trial[name] = value
    return trial


def save_into_hyperparams(agent: str, entry: dict[str, Any]) -> Path:
    """Merge ``entry`` (``{preset: params}``) into the agent's YAML file."""
    path = agents.HYPERPARAMS_DIR / f"{agent}.yml"
    table = yaml.safe_load(path.read_text()) or {}
    for preset, params in entry.items():
        table.setdefault(preset, {}).update(params)
    path.write_text(
        f"# {agent}: defaults and tuned entries (experiments.tune --save)\n" + yaml.safe_dump(table, sort_keys=False)
    )
    agents._load_yaml.cache_clear()
    return path


def tune(
    agent: str,
    preset: str,
    trials: int,
    timesteps: int | None = None,
    n_validation: int = 100,
    seed: int = 0,
    out: str | Path | None = None,
    save: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the study and write the best hyperparameters; returns them."""
    try:
        import optuna
    except ImportError as exc:
        raise SystemExit('experiments.tune needs Optuna: pip install -e ".[tune]"') from exc
    for name, value in (("trials", trials), ("timesteps", timesteps), ("n_validation", n_validation)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    budget = int(timesteps if timesteps is not None else agents.hyperparams(agent, preset).get("n_timesteps", 30_000))
    out = Path(out or Path("results") / "tune" / f"{agent}_{preset}")
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{agent}_{preset}",
        storage=f"sqlite:///{out / 'study.db'}",
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    if not study.trials:  # a new study: its first trial is the current defaults
        study.enqueue_trial(default_trial(agent, preset))
    seeds = validation_seeds(n_validation, master=seed)
    study.optimize(lambda t: objective(t, agent, preset, budget, seeds, seed), n_trials=trials, show_progress_bar=True)
    entry = best_yaml(study, agent, preset)
    (out / "best.yml").write_text(
        f"# best of {len(study.trials)} trials: validation schedule objective "
        f"{study.best_value:.4f} bps ({budget} steps, {n_validation} validation episodes)\n"
        + yaml.safe_dump(entry, sort_keys=False)
    )
    if save:
        save_into_hyperparams(agent, entry)
    return entry


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m experiments.tune``."""
    p = CLIParser(
        prog="python -m experiments.tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--agent", required=True, choices=sorted(agents.AGENTS))
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--trials", type=int, default=20, help="trials to run now (default 20)")
    p.add_argument("--timesteps", type=int, help="budget per trial (default: the agent's YAML)")
    p.add_argument("--n-validation", type=int, default=100, help="validation episodes (default 100)")
    p.add_argument("--seed", type=int, default=0, help="sampler, training and validation seed")
    p.add_argument("--out", help="study folder (default results/tune/<agent>_<preset>)")
    p.add_argument("--save", action="store_true", help="write the best into the agent's YAML")
    a = p.parse_args(argv)
    for option, value, low in (
        ("--trials", a.trials, 1),
        ("--timesteps", a.timesteps, 1),
        ("--n-validation", a.n_validation, 1),
        ("--seed", a.seed, 0),
    ):
        if value is not None and value < low:
            p.error(f"{option} must be an integer >= {low}, got {value}")
    entry = tune(a.agent, a.preset, a.trials, a.timesteps, a.n_validation, a.seed, a.out, a.save)
    print(yaml.safe_dump(entry, sort_keys=False))


if __name__ == "__main__":
    main()
