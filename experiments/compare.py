"""Train every agent over several seeds and compare it with every baseline on the same episodes.

    python -m experiments.compare                      # the quick default (ac2000 + liquidity, < 10 min)
    python -m experiments.compare --config experiments/configs/paper.yaml
    python -m experiments.compare --agents ppo --seeds 5 --timesteps 50000 --preset seed

One master seed derives the training seeds, the validation seeds and the evaluation seeds (all
disjoint, see ``sb3_exec.seeding``). Each run (agent x training seed) trains in its own process
(or Ray task), stores its model, metadata and evaluation under ``<out>/runs/<agent>_s<seed>/`` and
is skipped when the command is run again, so an interrupted comparison resumes where it stopped.
Outputs: ``summary.csv``, ``episodes.csv``, ``report.md``, figures and ``metadata.json``.
TensorBoard: ``tensorboard --logdir <out>/runs``.

A config file may hold ``parts``: a list of comparisons (one per preset, say) that share the
file's other settings; each writes ``<out>/<part name>/`` and ``<out>/README.md`` indexes them.
``--part`` runs some of them; ``--preset`` runs the part of that preset (or the shared settings
on that preset where no part has it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from experiments import workers
from experiments.runs import RunSpec, load_result, run_one, stored_ok, with_learning
from sb3_exec import agents
from sb3_exec.agents import custom
from sb3_exec.baselines import BASELINES, baselines_for
from sb3_exec.config import PRESETS, make_config
from sb3_exec.dynamics import episode_metrics, initial_state
from sb3_exec.evaluation import evaluate
from sb3_exec.seeding import evaluation_seeds, training_seeds, validation_seeds
from sb3_exec.train import CLIParser, versions, write_json

CONFIG_DIR = Path(__file__).parent / "configs"
BACKENDS = ("local", "ray")


@dataclass
class CompareConfig:
    """The whole experiment; loaded from YAML and written back beside the results."""

    name: str = "quick"  # output folder name under results/
    preset: str = "ac2000"  # env preset (sb3_exec.PRESETS)
    env_overrides: dict[str, Any] = field(default_factory=dict)  # ExecConfig overrides
    # registered agents' names and definitions of one's own (sb3_exec.agents.custom), run in order
    agents: list[Any] = field(default_factory=lambda: ["dqn", "ddqn", "ppo"])
    # agents defined but not listed in ``agents`` (written here when --agents selects others)
    agent_definitions: list[dict[str, Any]] = field(default_factory=list)
    baselines: list[str] | None = None  # None: every baseline the preset supports
    seeds: int = 3  # training seeds per agent
    timesteps: int | None = None  # training budget per run; None: each agent's YAML default
    hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-agent overrides
    eval_episodes: int = 2000  # seeded evaluation episodes shared by every policy
    validation_episodes: int = 100  # seeded episodes of the periodic validation during training
    master_seed: int = 0  # derives training, validation and evaluation seeds
    workers: int = 2  # parallel runs
    backend: str = "local"  # "local" (process pool) or "ray"
    address: str | None = None  # Ray cluster address (None: a local Ray instance)
    out: str | None = None  # output folder (default results/<name>)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        env_cfg = make_config(self.preset, **self.env_overrides)  # raises naming the bad override
        supported = baselines_for(env_cfg)
        if self.baselines is None:
            self.baselines = supported
        self.agents, self._defined = custom.comparison_agents(
            self.agents, self.agent_definitions, self.preset, self.env_overrides
        )
        self.agent_definitions = [d.as_dict() for d in self._defined.values()]
        for b in self.baselines:
            if b not in BASELINES:
                raise ValueError(f"baselines: unknown baseline {b!r}; choose from {sorted(BASELINES)}")
            if b not in supported:
                raise ValueError(
                    f"baselines: {b!r} does not support preset {self.preset!r} "
                    f"(its impact model); supported: {supported}"
                )
        if "twap" not in self.baselines:
            raise ValueError("baselines: twap is the reference of every paired comparison; keep it")
        unknown = sorted(set(self.hyperparams) - set(self.agents))
        if unknown:
            raise ValueError(f"hyperparams: entries for agents not in the comparison: {unknown}")
        for name, low in (("seeds", 1), ("eval_episodes", 2), ("validation_episodes", 0), ("workers", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.timesteps is not None and (not isinstance(self.timesteps, int) or self.timesteps < 1):
            raise ValueError(f"timesteps must be a positive integer or null, got {self.timesteps!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("results") / self.name

    def agent_spec(self, name: str) -> custom.AgentDef | custom.Registered:
        """An agent of the comparison: its definition, or the registered agent of that name."""
        return self._defined.get(name) or custom.resolve(name)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> CompareConfig:
        """Load a single-comparison config file; ``overrides`` (non-None values) replace its
        entries (``load_configs`` reads files with ``parts``)."""
        data = read_yaml(path)
        if "parts" in data:
            raise ValueError(f"parts: {path} holds several comparisons; use load_configs")
        return cls.from_dict(data, **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> CompareConfig:
        """A config from a mapping of settings; ``overrides`` (non-None values) replace them."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a comparison setting; settings are {sorted(known)}")
        if overrides.get("agents") is not None and "agents" in data:  # a selection of names: the
            custom.split_agents(data["agents"], "agents")  # file's definitions, checked where they are,
            data["agent_definitions"] = [
                *(data.get("agent_definitions") or []),  # stay available
                *custom.definitions_in(data.pop("agents")),
            ]
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's settings; a file that is not a YAML mapping is refused in one line."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ValueError(f"config: {path} is not valid YAML: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config: {path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def preflight(cfgs: Sequence[CompareConfig]) -> None:
    """Build every agent of every comparison once, with zero training steps, so that a bad
    hyperparameter or an agent that cannot run on the preset fails now, in seconds, with one line
    naming it, and not in every run after the baselines have been evaluated."""
    built = set()
    for cfg in cfgs:
        for agent in cfg.agents:
            params = cfg.hyperparams.get(agent, {})
            spec = cfg.agent_spec(agent)
            key = json.dumps(
                [agent, spec.identity(), cfg.preset, cfg.env_overrides, params], sort_keys=True, default=str
            )
            if key in built:
                continue
            if isinstance(spec, custom.AgentDef):  # its errors name the entry and the field
                try:
                    spec.check_build(cfg.preset, cfg.env_overrides, **params)
                except ValueError as exc:
                    raise ValueError(f"{cfg.name}: {exc}") from exc
                built.add(key)
                continue
            try:
                agents.check_hyperparams(agent, params)
                if agents.selection(agents.hyperparams(agent, cfg.preset)) == "best" and not cfg.validation_episodes:
                    raise ValueError(
                        f"validation_episodes: {agent!r} is evaluated as its best validation checkpoint "
                        f"(select: best in its YAML); give validation_episodes >= 1"
                    )
                env = agents.make_env(agent, cfg.preset, **cfg.env_overrides)
                try:
                    agents.make(agent, env, preset=cfg.preset, **params)
                finally:
                    env.close()
            except Exception as exc:  # whatever it is, say which agent and part, in one line
                reason = " ".join(str(exc).split())
                if not reason.startswith("hyperparams:"):
                    with_params = f" with hyperparams {params}" if params else ""
                    reason = f"agents: {agent!r} on preset {cfg.preset!r}{with_params}: {reason}"
                raise ValueError(f"{cfg.name}: {reason}") from exc
            built.add(key)


def execute(specs: Sequence[RunSpec], cfg: CompareConfig) -> list[dict[str, Any]]:
    """Run the specs on the chosen backend with a progress bar; results in spec order."""
    from tqdm.auto import tqdm

    results: dict[str, dict[str, Any]] = {}
    todo = []
    env_cfg = make_config(cfg.preset, **cfg.env_overrides)
    columns = list(episode_metrics(env_cfg, initial_state(env_cfg, 1)))
    for spec in specs:
        stored = load_result(Path(spec.run_dir), spec, columns)
        if stored is not None:
            results[spec.key] = stored
        else:
            todo.append(spec)
    if todo:
        bar = tqdm(total=len(todo), desc=f"runs ({len(specs) - len(todo)} stored)", unit="run")
        # closing: on Ctrl-C or an error the backend stops its runs now (workers terminated)
        with bar, contextlib.closing(_backend_map(todo, cfg)) as finished:
            for spec, result in finished:
                results[spec.key] = result
                bar.set_postfix_str(f"{spec.key}: {result['status']}")
                bar.update()
    for spec in specs:  # how each run learned, and which checkpoint its evaluation is of
        results[spec.key] = {**with_learning(results[spec.key], Path(spec.run_dir)), "checkpoint": spec.select}
    return [results[s.key] for s in specs]


def _backend_map(todo: Sequence[RunSpec], cfg: CompareConfig):
    """Yield (spec, result) as runs finish, on a process pool or on Ray."""
    if cfg.backend == "ray":
        try:
            import ray
        except ImportError as exc:
            raise SystemExit("backend ray needs Ray: pip install 'sb3-exec[ray]'") from exc
        ray.init(
            address=cfg.address,
            num_cpus=None if cfg.address else cfg.workers,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
        )
        task = ray.remote(num_cpus=1)(run_one)
        pending = {task.remote(s): s for s in todo}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    yield pending.pop(ref), ray.get(ref)
        finally:  # stopped early (Ctrl-C): the cluster does not go on with the rest
            for ref in pending:
                ray.cancel(ref, force=True)
        return
    if cfg.workers == 1:
        for spec in todo:
            yield spec, run_one(spec)
        return
    yield from workers.pool(run_one, todo, cfg.workers)  # workers die with this process


def git_commit() -> str | None:
    """The current git commit, if the code runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
            timeout=10,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def compare(cfg: CompareConfig) -> Path:
    """Run the whole comparison and write every output; returns the output folder."""
    from experiments.report import summarize, write_outputs

    start = time.perf_counter()
    preflight([cfg])  # a bad hyperparameter fails here, not in every run
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    seeds = {
        "training": training_seeds(cfg.seeds, cfg.master_seed),
        "validation": validation_seeds(cfg.validation_episodes, cfg.master_seed) if cfg.validation_episodes else [],
        "evaluation": evaluation_seeds(cfg.eval_episodes, cfg.master_seed),
    }
    write_json(out / "seeds.json", seeds)
    env_kwargs = {"preset": cfg.preset, **cfg.env_overrides}
    baseline_eval = evaluate({b: b for b in cfg.baselines}, env_kwargs, seeds["evaluation"], trajectories=True)
    definitions = {d["name"]: d for d in cfg.agent_definitions}
    specs = [
        RunSpec(
            a,
            s,
            cfg.preset,
            cfg.env_overrides,
            cfg.timesteps,
            cfg.hyperparams.get(a, {}),
            seeds["validation"],
            seeds["evaluation"],
            str(out / "runs" / f"{a}_s{s}"),
            definition=definitions.get(a),
        )
        for a in cfg.agents
        for s in seeds["training"]
    ]
    results = execute(specs, cfg)
    agent_episodes = [
        pd.read_csv(Path(s.run_dir) / "episodes.csv")
        for s, r in zip(specs, results, strict=True)
        if r["status"] == "ok"
    ]
    summary, episodes = summarize(baseline_eval, agent_episodes, results)
    meta = {
        "config": dataclasses.asdict(cfg),
        "resolved_env": dataclasses.asdict(baseline_eval.config),
        "seeds": {k: v if k != "evaluation" else f"{len(v)} seeds in seeds.json" for k, v in seeds.items()},
        "versions": versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "runs": [{k: r.get(k) for k in ("agent", "seed", "status", "error", "train_seconds")} for r in results],
        "wall_seconds": time.perf_counter() - start,
    }
    write_outputs(out, cfg, summary, episodes, baseline_eval, results, meta)
    write_json(out / "metadata.json", {**meta, "wall_seconds": time.perf_counter() - start})
    return out


def load_configs(path: str | Path, parts: Sequence[str] | None = None, **overrides: Any) -> list[CompareConfig]:
    """The comparisons a config file describes: one, or one per entry of its ``parts`` (each
    part's settings over the file's shared ones, written to ``<out>/<part name>/``). ``parts``
    selects some by name; a ``preset`` override keeps the part of that preset (or the shared
    settings with that preset where no part has it); other ``overrides`` apply to every part."""
    data = read_yaml(path)
    entries = data.pop("parts", None)
    if entries is None:
        if parts:
            raise ValueError(f"part: {path} has no parts")
        return [CompareConfig.from_dict(data, **overrides)]
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("name") for e in entries):
        raise ValueError("parts: a list of settings, each with a name")
    names = [e["name"] for e in entries]
    if parts:
        unknown = sorted(set(parts) - set(names))
        if unknown:
            raise ValueError(f"part: unknown part(s) {unknown}; the parts are {names}")
        entries = [e for e in entries if e["name"] in parts]
    preset = overrides.get("preset")
    if preset is not None:
        entries = [e for e in entries if e.get("preset") == preset][:1] or [{"name": preset}]
    shared = custom.definitions_in(data.get("agents"))
    for i, e in enumerate(entries):
        if "agents" in e and shared:  # a part listing its own agents may still run the shared ones
            own = {d.get("name") for d in custom.definitions_in(e["agents"])}
            entries[i] = {
                **e,
                "agent_definitions": [d for d in shared if d.get("name") not in own]
                + list(e.get("agent_definitions") or []),
            }
    root = Path(overrides.pop("out", None) or data.pop("out", None) or Path("results") / data.get("name", "compare"))
    if overrides.get("name"):
        root = Path("results") / overrides.pop("name")
    return [
        CompareConfig.from_dict({**data, **e}, **overrides, out=str(root / e["name"]), name=f"{root.name}/{e['name']}")
        for e in entries
    ]


def write_index(root: Path, order: Sequence[str] = ()) -> Path:
    """``<root>/README.md``: the headline tables of every part present under ``root`` (whatever
    subset of the parts the last command ran), linked to its report; parts named in ``order``
    (the config file's) first, others after them by name."""
    present = {d.name: d for d in root.iterdir() if (d / "summary_table.txt").is_file()}
    names = [n for n in order if n in present] + sorted(set(present) - set(order))
    lines = [
        f"# {root.name}: {len(names)} comparison{'' if len(names) == 1 else 's'}",
        "",
        "Written by `python -m experiments.compare`; each part's `report.md` has the figures, CIs and settings.",
        "",
    ]
    for name in names:
        lines += [
            f"## [{name}]({name}/report.md)",
            "",
            "```",
            (present[name] / "summary_table.txt").read_text().rstrip(),
            "```",
            "",
        ]
    path = root / "README.md"
    path.write_text("\n".join(lines))
    return path


def build_parser() -> CLIParser:
    """The command line of ``python -m experiments.compare``."""
    p = CLIParser(
        prog="python -m experiments.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        default=str(CONFIG_DIR / "quick.yaml"),
        help="experiment YAML (default: experiments/configs/quick.yaml)",
    )
    p.add_argument("--name", help="output folder name under results/ (or --out)")
    p.add_argument("--part", nargs="+", help="run only these parts of a multi-part config")
    p.add_argument("--preset", choices=sorted(PRESETS), help="env preset")
    p.add_argument(
        "--agents",
        nargs="*",
        metavar="AGENT",
        help=f"agents to train: registered ({', '.join(sorted(agents.AGENTS))}) or defined "
        "in the config file (none: a baselines-only comparison)",
    )
    p.add_argument(
        "--baselines",
        nargs="+",
        choices=sorted(BASELINES),
        help="baselines (twap required; default: all the preset supports)",
    )
    p.add_argument("--seeds", type=int, help="training seeds per agent")
    p.add_argument("--timesteps", type=int, help="training budget per run (default: each agent's YAML)")
    p.add_argument("--eval-episodes", type=int, help="seeded evaluation episodes")
    p.add_argument("--validation-episodes", type=int, help="validation episodes during training")
    p.add_argument("--master-seed", type=int, help="derives every other seed")
    p.add_argument("--workers", type=int, help="parallel runs")
    p.add_argument("--backend", choices=BACKENDS, help="local process pool or Ray")
    p.add_argument("--address", help="Ray cluster address (with --backend ray)")
    p.add_argument("--out", help="output folder (default results/<name>; or --name)")
    return p


def configs_from(a: argparse.Namespace, p: argparse.ArgumentParser) -> list[CompareConfig]:
    """The comparisons the parsed options describe: the config file under the options; a bad
    value exits with one line naming it."""
    if a.name and a.out:
        p.error("--name and --out both name the output folder; give one")
    overrides = {
        k: getattr(a, k)
        for k in (
            "name",
            "preset",
            "agents",
            "baselines",
            "seeds",
            "timesteps",
            "eval_episodes",
            "validation_episodes",
            "master_seed",
            "workers",
            "backend",
            "address",
            "out",
        )
    }
    try:
        return load_configs(a.config, a.part, **{k: v for k, v in overrides.items() if v is not None})
    except (ValueError, OSError) as exc:
        p.error(str(exc))
        raise  # unreachable: p.error exits


def parse_args(argv: Sequence[str] | None = None) -> list[CompareConfig]:
    """Command-line options over the config file (the quick default when none is given)."""
    p = build_parser()
    return configs_from(p.parse_args(argv), p)


def stored_runs(cfg: CompareConfig) -> tuple[int, int]:
    """(finished, total) training runs of a comparison stored on disk."""
    keys = [f"{a}_s{s}" for a in cfg.agents for s in training_seeds(cfg.seeds, cfg.master_seed)]
    return sum(stored_ok(cfg.out_dir / "runs" / k) is not None for k in keys), len(keys)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m experiments.compare``: runs each comparison, then indexes a
    multi-part config's parts; exits 1 when a run failed (each reason printed), 2 on bad input
    (one line, before anything runs), 130 on Ctrl-C (saying what finished)."""
    p = build_parser()
    a = p.parse_args(argv)
    cfgs = configs_from(a, p)
    try:
        preflight(cfgs)
    except ValueError as exc:
        p.error(str(exc))
    outs, failed, total = [], [], 0
    current = cfgs[0]
    try:
        for i, cfg in enumerate(cfgs):
            current = cfg
            if len(cfgs) > 1:
                print(f"\n[{i + 1}/{len(cfgs)}] {cfg.name}: {cfg.preset}, agents {cfg.agents}")
            out = compare(cfg)
            outs.append(out)
            print(f"\nwrote {out}/ (report.md, summary.csv, episodes.csv, figures, metadata.json)")
            print((out / "summary_table.txt").read_text())
            runs = json.loads((out / "metadata.json").read_text())["runs"]
            total += len(runs)
            for r in runs:
                if r["status"] != "ok":
                    failed.append(r)
                    print(f"FAILED {cfg.name} {r['agent']} seed {r['seed']}: {r['error']}")
    except KeyboardInterrupt:
        done, n = stored_runs(current)
        finished = "".join(f"{o.name} done; " for o in outs)
        print(
            f"\ninterrupted: {finished}{current.name}: {done} of {n} training runs finished "
            f"(stored in {current.out_dir / 'runs'}); rerun the same command to resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    if "/" in cfgs[0].name:  # parts of a multi-part config: index every part on disk
        parts = read_yaml(a.config).get("parts") or []
        print(f"wrote {write_index(outs[0].parent, [e.get('name') for e in parts])}")
    if failed:
        raise SystemExit(
            f"{len(failed)} of {total} runs failed (reasons above and in report.md); "
            "rerun the same command after fixing them: finished runs are reused"
        )


if __name__ == "__main__":
    main()
