"""One training run of a comparison: what determines it (``RunSpec``: its fingerprint, which
says whether a stored run can be reused, and its evaluation key), the worker that trains,
evaluates and stores it (``run_one``), and the checks that reuse a stored one (``trained``,
``load_result``). ``experiments.compare`` plans the runs and runs them on a backend.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sb3_exec import agents
from sb3_exec.actions import INTERFACES
from sb3_exec.agents import custom
from sb3_exec.evaluation import evaluate
from sb3_exec.train import write_json


@dataclass
class RunSpec:
    """One training run and its evaluation; everything a worker needs."""

    agent: str
    seed: int
    preset: str
    env_overrides: dict[str, Any]
    timesteps: int | None
    hyperparams: dict[str, Any]
    validation_seeds: list[int]
    eval_seeds: list[int]
    run_dir: str
    definition: dict[str, Any] | None = None  # an agent defined by class or factory (AgentDef.as_dict)

    @property
    def key(self) -> str:
        return f"{self.agent}_s{self.seed}"

    @property
    def agent_spec(self) -> custom.AgentDef | custom.Registered:
        """The registered agent, or the definition."""
        return custom.AgentDef(**self.definition) if self.definition else custom.resolve(self.agent)

    @property
    def fingerprint(self) -> str:
        """What determines the trained model: a stored run is reused only if this matches (a
        defined agent's definition too: its class or factory, interface and hyperparameters)."""
        spec = self.agent_spec
        params = {**spec.params(self.preset), **self.hyperparams}
        params.pop("select", None)  # which checkpoint is evaluated: part of eval_key, not of training
        budget = self.timesteps or params.get("n_timesteps")
        identity = {
            "agent": self.agent,
            "seed": self.seed,
            "preset": self.preset,
            "env": self.env_overrides,
            "timesteps": budget,
            "params": params,
            "validation": self.validation_seeds,
        }
        if self.definition is not None:
            identity["definition"] = spec.identity()
        return json.dumps(identity, sort_keys=True, default=str)

    @property
    def select(self) -> str:
        """The checkpoint the run is evaluated as (``agents.selection``: ``final`` or ``best``)."""
        return agents.selection({**self.agent_spec.params(self.preset), **self.hyperparams})

    @property
    def eval_key(self) -> str:
        """What determines the stored evaluation, beside the model: the episodes and the checkpoint."""
        what: Any = self.eval_seeds if self.select == "final" else {"seeds": self.eval_seeds, "select": self.select}
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train, evaluate and store one run; never raises (a failure is written and returned)."""
    import torch

    torch.set_num_threads(1)  # one core per run: parallelism is across runs
    from sb3_exec.policies import load_run
    from sb3_exec.train import load, train

    run_dir = Path(spec.run_dir)
    start = time.perf_counter()
    try:
        if trained(run_dir, spec.fingerprint):  # trained already; its evaluation is stale
            model, meta = load(run_dir / "model.zip"), json.loads((run_dir / "meta.json").read_text())
        else:
            res = train(
                spec.agent_spec,
                spec.preset,
                spec.seed,
                spec.timesteps,
                run_dir,
                n_validation=spec.validation_seeds or 0,
                env_overrides=spec.env_overrides,
                **spec.hyperparams,
            )
            model, meta = res.model, res.meta
        if spec.select != "final":  # the checkpoint its YAML selects (best validation score)
            model = load_run(run_dir / agents.SELECTIONS[spec.select])
        # the model acts through the interface it carries; meta's action_mode serves older models
        ev = evaluate({spec.agent: model}, meta["env_kwargs"], spec.eval_seeds, trajectories=True)
        episodes = ev.episodes.assign(run_seed=spec.seed)
        if not np.isfinite(episodes.objective_bps).all():
            raise FloatingPointError("non-finite objective in evaluation (NaN weights?)")
        episodes.to_csv(run_dir / "episodes.csv.tmp", index=False)
        Path(run_dir / "episodes.csv.tmp").replace(run_dir / "episodes.csv")
        paths = ev.steps.groupby("slice")[["q_rem", "part"]].mean()
        result = {
            "status": "ok",
            "agent": spec.agent,
            "seed": spec.seed,
            "train_seconds": meta["train_seconds"],
            "timesteps": meta["timesteps"],
            "validation": meta["validation"],
            "inventory": paths.q_rem.tolist(),
            "participation": paths.part.tolist(),
        }
    except Exception as exc:  # a failed run is reported, the others go on
        first = (str(exc).strip().splitlines() or [""])[0]  # one line (torch appends tensors)
        result = {
            "status": "failed",
            "agent": spec.agent,
            "seed": spec.seed,
            "error": f"{type(exc).__name__}: {first}",
            "traceback": traceback.format_exc(),
        }
    result["wall_seconds"] = time.perf_counter() - start
    result["fingerprint"], result["eval_key"] = spec.fingerprint, spec.eval_key
    write_json(run_dir / "result.json", result)
    return result


def stored_ok(run_dir: Path) -> dict[str, Any] | None:
    """A run's stored result if it finished (``result.json`` with status ok), else None."""
    path = run_dir / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("status") == "ok" else None


def trained(run_dir: Path, fingerprint: str) -> bool:
    """Whether a run finished training with the same settings (model and metadata stored)."""
    result = stored_ok(run_dir)
    return (
        result is not None
        and result.get("fingerprint") == fingerprint
        and (run_dir / "model.zip").exists()
        and (run_dir / "meta.json").exists()
    )


def load_result(run_dir: Path, spec: RunSpec, columns: Sequence[str]) -> dict[str, Any] | None:
    """A finished run's stored result, or None if it has to run (again): failed or incomplete
    runs are retried; a run trained with other settings (hyperparameters, budget, seeds) is
    trained again; a run whose stored evaluation is stale (other evaluation seeds, or lacking some
    of ``columns`` because an older version wrote it) is evaluated again from its stored model."""
    result = stored_ok(run_dir)
    episodes = run_dir / "episodes.csv"
    if (
        result is None
        or not episodes.exists()
        or result.get("fingerprint") != spec.fingerprint
        or result.get("eval_key") != spec.eval_key
    ):
        return None
    with open(episodes) as f:
        header = f.readline().strip().split(",")
    return result if set(columns) <= set(header) else None


def with_learning(result: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The result with ``learning``: ``model-assisted`` where the run's interface acts on a base
    policy's order (a residual on a baseline or planner), else ``from scratch`` (read from the
    env options the run trained with, ``meta.json``)."""
    meta = run_dir / "meta.json"
    if result.get("status") != "ok" or not meta.exists():
        return result
    mode = json.loads(meta.read_text())["env_kwargs"].get("action_mode")
    assisted = mode in INTERFACES and INTERFACES[mode].needs_base
    return {**result, "learning": "model-assisted" if assisted else "from scratch"}
