"""experiments.compare end to end: outputs, reproducibility, resumption, failures, Ray."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY
from experiments.compare import CompareConfig, compare, load_configs, main, parse_args

ROOT = Path(__file__).resolve().parents[1]


def test_cli_end_to_end(tmp_path):
    cfg = {
        **TINY,
        "agents": ["ppo", "ddqn"],
        "workers": 2,
        "name": "tiny",
        "hyperparams": {"ppo": TINY["hyperparams"]["ppo"], "ddqn": {"learning_starts": 100}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.compare", "--config", str(path), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for f in (
        "summary.csv",
        "episodes.csv",
        "report.md",
        "metadata.json",
        "config.yaml",
        "seeds.json",
        "learning_curves.png",
        "shortfall_distributions.png",
        "paired_differences.png",
        "inventory_paths.png",
        "efficient_frontier.png",
    ):
        assert (out / f).stat().st_size > 0, f
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert set(summary.index) == {"twap", "pov", "vwap", "ac", "immediate", "adaptive", "oracle", "dp", "ppo", "ddqn"}
    for col in (
        "shortfall_bps",
        "objective_bps_lo",
        "objective_bps_sd",
        "diff_objective_bps_hi",
        "win_rate_objective_bps",
        "regret_schedule_objective_bps_pct",
        "iqm_schedule_objective_bps",
        "iqm_schedule_objective_bps_lo",
        "p_improve_twap_schedule_objective_bps",
        "runs",
        "failed_runs",
    ):
        assert col in summary, col
    assert summary.loc["ppo", "runs"] == 2 and summary.loc["ppo", "failed_runs"] == 0
    episodes = pd.read_csv(out / "episodes.csv")
    assert len(episodes) == 8 * 50 + 2 * 2 * 50  # 8 baselines (dp too), 2 agents x 2 runs
    assert episodes.groupby("policy").seed.nunique().eq(50).all()  # the same 50 episodes
    meta = json.loads((out / "metadata.json").read_text())
    for key in ("config", "seeds", "versions", "git_commit", "wall_seconds", "resolved_env"):
        assert key in meta, key
    seeds = json.loads((out / "seeds.json").read_text())
    assert not (set(seeds["validation"]) & set(seeds["evaluation"]))
    report = (out / "report.md").read_text()
    assert "schedule objective" in report and "![" in report and "| ppo |" in report
    assert "with the closed-form frontier" in report  # ac2000 is the Almgren-Chriss model
    assert len(list((out / "runs").glob("*/tb/*/events.out.tfevents.*"))) == 4
    assert "summary_table" not in proc.stderr


def test_reproducible_and_resumes(tmp_path):
    a = compare(CompareConfig(**TINY, out=str(tmp_path / "a")))
    b = compare(CompareConfig(**TINY, out=str(tmp_path / "b")))
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    # interrupt: one run's result is lost; a rerun redoes that run only
    runs = sorted((b / "runs").iterdir())
    (runs[0] / "result.json").unlink()
    kept = (runs[1] / "result.json").stat().st_mtime_ns
    compare(CompareConfig(**TINY, out=str(b)))
    assert (runs[1] / "result.json").stat().st_mtime_ns == kept
    assert (runs[0] / "result.json").exists()
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    # an evaluation written by an older version (a column missing) is redone from the stored
    # model, without training again
    old = pd.read_csv(runs[1] / "episodes.csv").drop(columns="penalty_bps")
    old.to_csv(runs[1] / "episodes.csv", index=False)
    model_time = (runs[1] / "model.zip").stat().st_mtime_ns
    compare(CompareConfig(**TINY, out=str(b)))
    assert "penalty_bps" in pd.read_csv(runs[1] / "episodes.csv")
    assert (runs[1] / "model.zip").stat().st_mtime_ns == model_time
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    # other hyperparameters: the stored runs are not reused, they train again
    changed = {**TINY, "hyperparams": {"ppo": {"n_steps": 32, "batch_size": 32}}}
    compare(CompareConfig(**changed, out=str(b)))
    assert (runs[1] / "model.zip").stat().st_mtime_ns != model_time


def test_a_failing_run_is_reported_and_the_others_finish(tmp_path):
    cfg = CompareConfig(
        **{
            **TINY,
            "agents": ["ppo", "ddqn"],
            "seeds": 1,
            # builds (the preflight passes) but training diverges
            "hyperparams": {
                "ppo": {"ent_coef": float("nan"), "n_steps": 32, "batch_size": 64},
                "ddqn": {"learning_starts": 100},
            },
        },
        out=str(tmp_path / "f"),
    )
    out = compare(cfg)
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert summary.loc["ppo", "failed_runs"] == 1 and pd.isna(summary.loc["ppo", "objective_bps"])
    assert summary.loc["ddqn", "failed_runs"] == 0 and summary.loc["ddqn", "objective_bps"] > 0
    report = (out / "report.md").read_text()
    assert "Failed runs" in report
    failure = next(line for line in report.splitlines() if line.startswith("- `ppo` seed"))
    assert "ValueError: Expected parameter logits" in failure and "tensor(" not in report  # one line
    # a blank cell reads n/a everywhere, never nan
    table = (out / "summary_table.txt").read_text()
    ppo_row = next(line.split() for line in table.splitlines()[::-1] if line.split()[:1] == ["ppo"])
    # learning n/a, checkpoint final (the agent's, failed or not), 0 runs ok, 1 failed
    assert ppo_row[1:5] == ["n/a", "final", "0", "1"] and set(ppo_row[5:]) == {"n/a"}, ppo_row
    assert "nan" not in table.split() and "| nan" not in report
    # a value the algorithm refuses when it is built fails before anything runs, naming the agent
    nan_lr = {**cfg.hyperparams, "ppo": {"learning_rate": float("nan")}}
    with pytest.raises(ValueError, match=r"'ppo' on preset 'ac2000'.*learning rate"):
        compare(dataclasses.replace(cfg, hyperparams=nan_lr, out=str(tmp_path / "g")))
    assert not (tmp_path / "g").exists()


def test_ray_backend(tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'sb3-exec[ray]'")
    local = compare(CompareConfig(**TINY, out=str(tmp_path / "local")))
    ray_out = compare(CompareConfig(**{**TINY, "workers": 2}, backend="ray", out=str(tmp_path / "ray")))
    assert (local / "summary.csv").read_bytes() == (ray_out / "summary.csv").read_bytes()


@pytest.mark.parametrize(
    "field,value",
    [
        ("preset", "x"),
        ("agents", ["sac"]),
        ("seeds", 0),
        ("eval_episodes", 1),
        ("baselines", ["pov"]),
        ("backend", "slurm"),
        ("env_overrides", {"T": 0}),
        ("timesteps", -5),
        ("hyperparams", {"dqn": {}}),
    ],
)
def test_bad_config(field, value):
    with pytest.raises(ValueError, match=field if field != "env_overrides" else "T"):
        CompareConfig(**{**TINY, field: value})


def test_baselines_follow_the_preset():
    assert "oracle" not in CompareConfig(**{**TINY, "preset": "seed"}).baselines
    assert "oracle" in CompareConfig(**{**TINY, "preset": "liquidity"}).baselines
    with pytest.raises(ValueError, match="baselines"):
        CompareConfig(**{**TINY, "preset": "seed", "baselines": ["twap", "oracle"]})


def test_liquidity_report_has_the_gap_closed(tmp_path):
    out = compare(
        CompareConfig(
            **{**TINY, "preset": "liquidity", "agents": [], "hyperparams": {}, "eval_episodes": 200},
            out=str(tmp_path / "l"),
        )
    )
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert 0 < summary.loc["adaptive", "gap_closed_pct"] < 100
    report = (out / "report.md").read_text()
    assert "gap closed" in report and "regret vs causal optimum" in report
    assert "closed-form frontier" not in report and "up close to dp" in report  # no AC frontier here
    # the gap splits into what a causal policy can reach and the value of foresight
    assert "reachable by a causal policy" in report and "value of foresight" in report
    assert "The DP predicts its own mean" in report
    sched = summary["schedule_objective_bps"]
    assert sched["oracle"] < sched["dp"] < sched["adaptive"] < sched["twap"]
    np.testing.assert_allclose(summary.loc["adaptive", "regret_dp_bps"], sched["adaptive"] - sched["dp"], atol=1e-9)
    assert summary.loc["dp", "regret_dp_bps"] == 0 and summary.loc["adaptive", "regret_dp_bps_lo"] > 0
    # every policy is also paired with the adaptive MPC: TWAP costs more, the oracle less
    m = "vs_adaptive_schedule_objective_bps"
    assert summary.loc["adaptive", m] == 0
    assert summary.loc["twap", f"{m}_lo"] > 0 and summary.loc["oracle", f"{m}_hi"] < 0
    np.testing.assert_allclose(
        summary.loc["twap", m],
        summary.loc["twap", "schedule_objective_bps"] - summary.loc["adaptive", "schedule_objective_bps"],
        atol=1e-9,
    )


def test_shipped_configs_load_and_help_runs():
    for path in (ROOT / "experiments" / "configs").glob("*.yaml"):
        assert load_configs(path)
    quick = load_configs(ROOT / "experiments" / "configs" / "quick.yaml")
    assert [c.preset for c in quick] == ["ac2000", "liquidity"]  # the default coverage
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.compare", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0 and "--backend" in proc.stdout and "--eval-episodes" in proc.stdout


def test_baselines_only_comparison(tmp_path):
    out = compare(
        CompareConfig(**{**TINY, "agents": [], "hyperparams": {}, "eval_episodes": 300}, out=str(tmp_path / "b"))
    )
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert list(summary.index) == ["twap", "pov", "vwap", "ac", "immediate", "adaptive", "oracle", "dp"]
    assert summary.loc["ac", "regret_schedule_objective_bps"] == pytest.approx(0, abs=1e-9)


def test_multi_part_config_runs_each_part_and_indexes_them(tmp_path):
    shared = {k: v for k, v in TINY.items() if k not in ("preset", "agents", "hyperparams")}
    parts = [
        {"name": "a", "preset": "ac2000", "agents": ["ppo"], "hyperparams": TINY["hyperparams"]},
        {"name": "liq", "preset": "liquidity", "agents": [], "eval_episodes": 20},
    ]
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump({"name": "multi", **shared, "parts": parts}))
    cfgs = load_configs(path, out=str(tmp_path / "m"))
    assert [(c.preset, c.eval_episodes, c.out_dir) for c in cfgs] == [
        ("ac2000", 50, tmp_path / "m" / "a"),
        ("liquidity", 20, tmp_path / "m" / "liq"),
    ]
    # selecting: by part, by preset (its part), and a preset no part has (the shared settings)
    assert [c.preset for c in load_configs(path, ["liq"])] == ["liquidity"]
    assert load_configs(path, preset="liquidity")[0].eval_episodes == 20
    assert load_configs(path, preset="seed")[0].agents == CompareConfig().agents
    assert all(c.seeds == 5 for c in load_configs(path, seeds=5))
    with pytest.raises(ValueError, match="part"):
        load_configs(path, ["nope"])
    with pytest.raises(ValueError, match="parts"):
        CompareConfig.from_yaml(path)
    with pytest.raises(SystemExit):  # both name the folder: refused, not silently one of them
        parse_args(["--config", str(path), "--out", str(tmp_path / "m"), "--name", "other"])
    main(["--config", str(path), "--out", str(tmp_path / "m")])
    index = (tmp_path / "m" / "README.md").read_text()
    assert "[a](a/report.md)" in index and "[liq](liq/report.md)" in index and "oracle" in index
    assert pd.read_csv(tmp_path / "m" / "liq" / "summary.csv").policy.tolist()[-2:] == ["oracle", "dp"]


def _multi_config(tmp_path: Path) -> Path:
    """A two-part baselines-only config (seconds to run)."""
    shared = {k: v for k, v in TINY.items() if k not in ("preset", "agents", "hyperparams")}
    parts = [
        {"name": "a", "preset": "ac2000", "agents": []},
        {"name": "liq", "preset": "liquidity", "agents": [], "eval_episodes": 20},
    ]
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump({"name": "multi", **shared, "parts": parts}))
    return path


def test_a_preset_run_keeps_every_part_in_the_index(tmp_path):
    path, root = _multi_config(tmp_path), tmp_path / "m"
    main(["--config", str(path), "--out", str(root), "--part", "a"])
    assert (root / "README.md").read_text().startswith("# m: 1 comparison\n")  # singular
    main(["--config", str(path), "--out", str(root), "--preset", "liquidity"])
    index = (root / "README.md").read_text()
    assert index.startswith("# m: 2 comparisons\n")
    assert index.index("[a](a/report.md)") < index.index("[liq](liq/report.md)")  # the file's order
    # a preset no part has runs the shared settings in a folder of its own; the index keeps all
    main(["--config", str(path), "--out", str(root), "--preset", "seed", "--agents", "--eval-episodes", "10"])
    index = (root / "README.md").read_text()
    assert index.startswith("# m: 3 comparisons\n") and "[seed](seed/report.md)" in index
    assert "[liq](liq/report.md)" in index and "[a](a/report.md)" in index


def _one_line_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(n in lines[0] for n in names), lines[0]
    return lines[0]


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False, timeout=timeout
    )


def test_a_bad_hyperparameter_fails_in_seconds_naming_it(tmp_path):
    cfg = {**TINY, "hyperparams": {"ppo": {"learning_rat": 0.001}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    start = time.perf_counter()
    proc = _cli("experiments.compare", "--config", str(path), "--out", str(tmp_path / "out"))
    assert time.perf_counter() - start < 30  # no baseline evaluation, no run started
    line = _one_line_error(proc, "hyperparams", "ppo", "'learning_rat'", "'learning_rate'")
    assert not (tmp_path / "out").exists(), line


def test_an_agent_that_cannot_run_on_the_preset_fails_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--preset", "seed", "--agents", "ppo_res", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'ppo_res'" in err and "'seed'" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "text,names",
    [
        ("agents: [ppo\n", ("config", "not valid YAML", "line 2")),
        ("- ppo\n", ("config", "mapping")),
        ("agents: [ppo]\nlearning_rate: 1\n", ("learning_rate",)),
    ],
)
def test_a_bad_config_file_gives_one_line(tmp_path, text, names):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    _one_line_error(_cli("experiments.compare", "--config", str(path)), str(names[0]), *names[1:])


def test_failed_runs_exit_nonzero_with_their_reasons(tmp_path, capsys):
    cfg = {**TINY, "seeds": 1, "hyperparams": {"ppo": {"ent_coef": float("nan"), "n_steps": 32, "batch_size": 64}}}
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(path), "--out", str(tmp_path / "o")])
    assert "1 of 1 runs failed" in str(exc.value.code)
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "ppo seed" in failed[0] and "Error" in failed[0], out
    assert (tmp_path / "o" / "report.md").exists()  # the outputs are written all the same


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of a process's children, from /proc."""
    kids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, ValueError, IndexError):
            pass  # it ended meanwhile
    return kids


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _as_a_terminal_job() -> None:
    """Ctrl-C as a terminal's foreground job gets it: a test suite started in the background of a
    non-interactive shell runs with SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_long_comparison(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A comparison of two long runs on two workers, started in its own session; returns it and
    its children's pids once both workers are up."""
    cfg = {**TINY, "timesteps": 10**7, "validation_episodes": 0, "workers": 2}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.compare", "--config", str(path), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_as_a_terminal_job,  # noqa: PLW1509 (on purpose: SIGINT restored in the child; no threads here)
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        kids = _children(proc.pid)
        if sum("spawn_main" in cmd for _, cmd in kids) == 2:
            time.sleep(2)  # the workers are into their runs
            return proc, [pid for pid, _ in _children(proc.pid)]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"the workers did not start: {proc.communicate()[1][-2000:]}")


def _wait_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_parent_leaves_no_worker(tmp_path):
    proc, kids = _start_long_comparison(tmp_path)
    assert len(kids) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _wait_gone(kids) == []  # the pool's workers and the resource tracker


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_says_what_finished_in_one_line(tmp_path):
    proc, kids = _start_long_comparison(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    message = err.strip().splitlines()[-1]
    assert message.startswith("interrupted:") and "0 of 2 training runs finished" in message
    assert "rerun the same command to resume" in message
    assert _wait_gone(kids) == []


def test_json_outputs_are_readable_like_the_other_files(tmp_path):
    out = compare(CompareConfig(**TINY, out=str(tmp_path / "p")))
    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    files = [out / "metadata.json", out / "seeds.json", out / "summary.csv", out / "report.md"]
    run = sorted((out / "runs").iterdir())[0]
    files += [run / f for f in ("meta.json", "result.json", "model.zip", "episodes.csv")]
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: expected for f in files}
