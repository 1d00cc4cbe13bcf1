"""Train one agent (registered, or defined by its class or factory) on one preset and save it with
its metadata.

    python -m sb3_exec.train --agent ddqn --preset ac2000 --seed 0 --timesteps 30000 --out runs/ddqn

writes ``model.zip``, ``meta.json`` (agent, preset, seed, budget, resolved config, hyperparameters,
package versions, wall time), ``best_model.zip`` (best validation score) and TensorBoard logs
under ``tb/`` (``tensorboard --logdir runs``). ``meta.json``'s ``selected`` names the checkpoint the
agent is evaluated as (``model.zip``, or ``best_model.zip`` where its YAML entry says
``select: best``); ``sb3_exec.load_run`` of the folder loads that one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList

from sb3_exec import agents
from sb3_exec.agents import custom
from sb3_exec.agents.custom import AgentDef
from sb3_exec.callbacks import ExecutionMetricsCallback, HParamCallback, SeededEvalCallback
from sb3_exec.config import PRESETS, make_config
from sb3_exec.policies import load_run
from sb3_exec.seeding import validation_seeds


@dataclass
class TrainResult:
    """A trained model (the final one), where it was saved, and its metadata."""

    model: BaseAlgorithm
    path: Path
    meta: dict[str, Any]

    @property
    def selected(self) -> Path:
        """The checkpoint the agent is evaluated as (``meta["selected"]``, beside ``path``)."""
        return self.path.parent / self.meta.get("selected", self.path.name)


def versions() -> dict[str, str]:
    """Versions of the packages that determine the numbers."""
    import gymnasium
    import sb3_contrib
    import stable_baselines3
    import torch

    import sb3_exec

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "gymnasium": gymnasium.__version__,
        "sb3_exec": sb3_exec.__version__,
        "platform": platform.platform(),
    }


class CLIParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line naming the option and the value (no usage block)."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a temp file renamed into place), readable like any other file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    umask = os.umask(0)  # mkstemp makes the file private (0600); give it the usual 0666 & ~umask
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def train(
    agent: str | AgentDef,
    preset: str = "ac2000",
    seed: int = 0,
    timesteps: int | None = None,
    out: str | Path = "runs/train",
    n_validation: int | Sequence[int] = 200,
    eval_freq: int | None = None,
    progress_bar: bool = False,
    tensorboard: bool = True,
    verbose: int = 0,
    env_overrides: dict[str, Any] | None = None,
    **hyperparam_overrides: Any,
) -> TrainResult:
    """Train ``agent`` on ``preset`` and save it under ``out``.

    :param agent: a name in ``sb3_exec.agents.AGENTS``, or an agent defined by its class or
        factory (``sb3_exec.agents.custom.AgentDef``)
    :param preset: a preset name (its YAML entry and env)
    :param seed: SB3 seed: weights, exploration and training episodes
    :param timesteps: training budget in env steps (default: the YAML's ``n_timesteps``)
    :param out: output folder
    :param n_validation: validation episodes per periodic evaluation (0 disables it), or the
        list of validation seeds to use (default: ``seeding.validation_seeds(n, master=seed)``)
    :param eval_freq: env steps between evaluations (default: the YAML's ``eval_freq``, else a
        fifth of the budget)
    :param progress_bar: show SB3's progress bar
    :param tensorboard: write TensorBoard logs to ``out/tb``
    :param env_overrides: config overrides for the training and validation env
    :param hyperparam_overrides: algorithm arguments replacing the YAML's
    """
    spec = custom.resolve(agent)
    name = spec.name
    params = spec.params(preset)
    budget = int(timesteps if timesteps is not None else params.get("n_timesteps", 30_000))
    if budget < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if isinstance(n_validation, int) and n_validation < 0:
        raise ValueError(f"n_validation must be >= 0 (0: no validation), got {n_validation}")
    select = agents.selection(params)
    if select == "best" and not n_validation:
        warnings.warn(
            f"select: {name} is evaluated as its best validation checkpoint, but n_validation=0 "
            f"runs no validation: the final model is selected",
            stacklevel=2,
        )
        select = "final"
    eval_freq = eval_freq or params.get("eval_freq") or max(1, budget // 5)
    if not isinstance(eval_freq, int) or eval_freq < 1:
        raise ValueError(f"eval_freq must be an integer >= 1, got {eval_freq!r}")
    env_kwargs = spec.env_kwargs_for(preset, **(env_overrides or {}))
    cfg_kwargs = {k: v for k, v in env_kwargs.items() if k != "preset"}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = spec.make_env(preset, seed=seed, **(env_overrides or {}))
    model = spec.make(
        env,
        seed=seed,
        preset=preset,
        tensorboard_log=str(out / "tb") if tensorboard else None,
        verbose=verbose,
        **hyperparam_overrides,
    )
    callbacks = [ExecutionMetricsCallback(), HParamCallback({"preset": preset, "agent": name})]
    evaluator = None
    if n_validation:
        # Validation replays the training market on fixed seeds (evaluate reports both objectives)
        seeds = validation_seeds(n_validation, master=seed) if isinstance(n_validation, int) else list(n_validation)
        evaluator = SeededEvalCallback(
            env_kwargs,
            seeds,
            eval_freq=eval_freq,
            best_model_save_path=out,
            verbose=verbose,
        )
        callbacks.append(evaluator)
    start = time.perf_counter()
    model.learn(
        budget, callback=CallbackList(callbacks), progress_bar=progress_bar, tb_log_name=f"{name}_{preset}_s{seed}"
    )
    if evaluator is not None and not evaluator.history:  # a budget below eval_freq: validate once
        evaluator.run_evaluation()
    wall = time.perf_counter() - start
    path = out / "model.zip"
    model.save(path)
    cfg = make_config(preset, **cfg_kwargs)
    algo = type(model)
    meta = {
        "agent": name,
        "algo": f"{algo.__module__}:{algo.__qualname__}",
        "preset": preset,
        "seed": seed,
        "timesteps": budget,
        "env_kwargs": env_kwargs,
        "config": dataclasses.asdict(cfg),
        "hyperparams": {**params, **hyperparam_overrides},
        "train_seconds": wall,
        "selected": agents.SELECTIONS[select],
        "validation": evaluator.history if evaluator else [],
        "versions": versions(),
    }
    if isinstance(spec, AgentDef):  # what it was built from (the class or factory, the interface)
        meta["definition"] = spec.as_dict()
    write_json(out / "meta.json", meta)
    return TrainResult(model, path, meta)


def load(path: str | Path) -> BaseAlgorithm:
    """Load a model saved by ``train`` (its ``meta.json`` names the algorithm); to evaluate it
    through the interface it was trained in, ``sb3_exec.load_run`` gives the policy."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("algo"):
        return load_run(path).model
    algo = agents.AGENTS[meta["agent"]].algo  # written before meta.json named the algorithm
    return algo.load(folder / "model.zip" if path.is_dir() else path, device="cpu")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    p = CLIParser(
        prog="python -m sb3_exec.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--agent", required=True, choices=sorted(agents.AGENTS))
    p.add_argument("--preset", default="ac2000", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0, help="SB3 seed (default 0)")
    p.add_argument("--timesteps", type=int, default=None, help="budget (default: the YAML's)")
    p.add_argument("--out", default=None, help="output folder (default runs/<agent>_<preset>_s<seed>)")
    p.add_argument("--n-validation", type=int, default=200, help="validation episodes (0: none)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    for option, value, low in (
        ("--seed", args.seed, 0),
        ("--timesteps", args.timesteps, 1),
        ("--n-validation", args.n_validation, 0),
    ):
        if value is not None and value < low:
            p.error(f"{option} must be an integer >= {low}, got {value}")
    out = args.out or f"runs/{args.agent}_{args.preset}_s{args.seed}"
    try:
        res = train(
            args.agent,
            args.preset,
            args.seed,
            args.timesteps,
            out,
            n_validation=args.n_validation,
            progress_bar=not args.no_progress,
        )
    except ValueError as exc:  # a bad value the options could not see (hyperparameters, YAML)
        p.error(str(exc))
    last = res.meta["validation"][-1] if res.meta["validation"] else {}
    print(
        f"saved {res.path} ({res.meta['train_seconds']:.1f} s); last validation: "
        + ", ".join(f"{k}={v:.3f}" for k, v in last.items())
    )


if __name__ == "__main__":
    main()
