"""The README's "Compare your own agent" works as written: its example file runs end to end through
``experiments.compare`` at a tiny budget (an sb3-contrib algorithm the package does not register,
a RecurrentPPO and a factory, in summary.csv and the report with CIs), resumes, trains a changed
definition again, and its Python example runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from experiments.compare import CompareConfig, compare, load_configs, parse_args

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "experiments" / "configs" / "examples" / "own_agents.yaml"
DEFINED = ["tqc", "lstm", "mine"]
SMALL = [
    "--timesteps",
    "300",
    "--seeds",
    "1",
    "--eval-episodes",
    "20",
    "--validation-episodes",
    "5",
    "--baselines",
    "twap",
    "ac",
    "--workers",
    "2",
]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Compare your own agent")
    return text[start : text.index("\n## ", start + 1)]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.compare", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_readme_shows_the_example_file():
    block = re.search(r"```yaml\n(.*?)```", _section(), flags=re.DOTALL).group(1)
    example = yaml.safe_load(EXAMPLE.read_text())
    assert yaml.safe_load(block)["agents"] == example["agents"]
    assert example["agents"][0] == "ppo" and [a["name"] for a in example["agents"][1:]] == DEFINED


def test_the_example_runs_end_to_end_at_a_small_budget(tmp_path):
    out = tmp_path / "own"
    proc = _cli("--config", str(EXAMPLE), "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert list(summary.index) == ["twap", "ac", "ppo", *DEFINED]
    for agent in ["ppo", *DEFINED]:
        row = summary.loc[agent]
        assert row.kind == "agent" and row.runs == 1 and row.failed_runs == 0, row
        assert row.objective_bps_lo < row.objective_bps < row.objective_bps_hi, row  # a CI of 20 episodes
        assert row.schedule_objective_bps_lo <= row.schedule_objective_bps <= row.schedule_objective_bps_hi
        assert np.isfinite(row[["diff_objective_bps_lo", "diff_objective_bps_hi"]].astype(float)).all()
    episodes = pd.read_csv(out / "episodes.csv")
    seeds = set(episodes[episodes.policy == "twap"].seed)
    assert all(set(episodes[episodes.policy == a].seed) == seeds for a in DEFINED)  # the same episodes
    report = (out / "report.md").read_text()
    assert all(f"| {a} |" in report for a in DEFINED)
    assert "Agents defined in the config: `tqc`: `sb3_contrib:TQC` on `fraction`" in report
    runs = {p.name.split("_s")[0]: p for p in (out / "runs").iterdir()}
    algos = {a: json.loads((runs[a] / "meta.json").read_text())["algo"] for a in runs}
    assert algos == {
        "ppo": "stable_baselines3.ppo.ppo:PPO",
        "tqc": "sb3_contrib.tqc.tqc:TQC",
        "lstm": "sb3_contrib.ppo_recurrent.ppo_recurrent:RecurrentPPO",
        "mine": "stable_baselines3.dqn.dqn:DQN",
    }
    for a in DEFINED:  # validation, TensorBoard and the definition, as for a registered agent
        meta = json.loads((runs[a] / "meta.json").read_text())
        assert meta["definition"]["name"] == a and meta["validation"] and (runs[a] / "best_model.zip").exists()
        assert list((runs[a] / "tb").glob("*/events.out.tfevents.*")), a
    # the config written beside the results is the same comparison
    back = CompareConfig.from_yaml(out / "config.yaml")
    assert back.agents == ["ppo", *DEFINED] and [d["name"] for d in back.agent_definitions] == DEFINED


def _mtimes(out: Path) -> dict[str, int]:
    return {p.parent.name.split("_s")[0]: p.stat().st_mtime_ns for p in (out / "runs").glob("*/model.zip")}


def _write(tmp_path: Path, name: str, edit) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    edit({a["name"]: a for a in data["agents"] if isinstance(a, dict)})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_resume_reuses_unchanged_definitions_and_trains_changed_ones(tmp_path):
    small = {
        "timesteps": 200,
        "seeds": 1,
        "eval_episodes": 10,
        "validation_episodes": 0,
        "baselines": ["twap"],
        "workers": 1,
        "out": str(tmp_path / "r"),
        "agents": ["mine", "lstm"],
    }
    out = compare(load_configs(EXAMPLE, **small)[0])
    first = _mtimes(out)
    summary = (out / "summary.csv").read_bytes()
    compare(load_configs(EXAMPLE, **small)[0])
    assert _mtimes(out) == first and (out / "summary.csv").read_bytes() == summary  # nothing trained again
    # another hyperparameter of the factory: that agent trains again, the other is reused
    changed = _write(tmp_path, "lr.yaml", lambda d: d["mine"]["hyperparams"].update(lr_end=2e-4))
    compare(load_configs(changed, **small)[0])
    second = _mtimes(out)
    assert second["mine"] != first["mine"] and second["lstm"] == first["lstm"]
    # a description is not the model; an interface is
    described = _write(
        tmp_path,
        "d.yaml",
        lambda d: (d["mine"]["hyperparams"].update(lr_end=2e-4), d["lstm"].update(description="another text")),
    )
    compare(load_configs(described, **small)[0])
    assert _mtimes(out) == second
    other = _write(
        tmp_path,
        "i.yaml",
        lambda d: (d["mine"]["hyperparams"].update(lr_end=2e-4), d["lstm"].update(action_mode="continuous")),
    )
    compare(load_configs(other, **small)[0])
    third = _mtimes(out)
    assert third["lstm"] != second["lstm"] and third["mine"] == second["mine"]
    meta = json.loads(next((out / "runs").glob("lstm_s*/meta.json")).read_text())
    assert meta["env_kwargs"]["action_mode"] == "continuous"


def test_agents_selects_among_registered_and_defined_names(tmp_path):
    cfg = parse_args(["--config", str(EXAMPLE), "--agents", "tqc", "ppo"])[0]
    assert cfg.agents == ["tqc", "ppo"] and [d["name"] for d in cfg.agent_definitions] == DEFINED
    proc = _cli("--config", str(EXAMPLE), "--agents", "tqx", "--out", str(tmp_path / "o"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "unknown agent 'tqx'" in lines[0] and "defined here: ['lstm', 'mine', 'tqc']" in lines[0], lines[0]
    assert not (tmp_path / "o").exists()
    # the parts of a file share its definitions, also a part that lists its own agents
    data = yaml.safe_load(EXAMPLE.read_text())
    data["parts"] = [{"name": "a", "agents": ["mine", "ppo"]}, {"name": "b", "preset": "liquidity"}]
    path = tmp_path / "parts.yaml"
    path.write_text(yaml.safe_dump(data))
    a, b = load_configs(path)
    assert a.agents == ["mine", "ppo"] and a.agent_spec("mine").factory == "experiments.examples.my_agents:make"
    assert b.agents == ["ppo", *DEFINED] and b.preset == "liquidity"


def test_the_readme_python_example_runs():
    code = re.search(r"```python\n(.*?)```", _section(), flags=re.DOTALL).group(1)
    small = code.replace("lstm.learn(20_000)", "lstm.learn(128)").replace(
        "evaluation_seeds(2000)", "evaluation_seeds(20)"
    )
    assert small.count("(128)") == 1 and small.count("(20)") == 1, "the README example changed: update this test"
    namespace: dict = {}
    exec(compile(small, "README.md", "exec"), namespace)  # the README's own example)
    by = namespace["ev"].episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    assert list(by.columns.sort_values()) == ["ac", "greedy", "lstm", "rule", "twap"]
    np.testing.assert_allclose(by["rule"], by["ac"], rtol=1e-9)  # the rule is Almgren-Chriss's pace
