"""Speed of the simulator, measured side by side with the notebook's loop on this machine.

    python -m experiments.benchmark            # a table
    python -m experiments.benchmark --json     # the same numbers as JSON

Workload: the ``seed`` preset (the notebook's model), every episode running all its slices (the
participation grid's action 0, then the deadline liquidation), so every step and every reset does
the model's full work in both implementations. The single env is built by ``gymnasium.make``, so
any wrapper it adds is timed too (the env is registered without gymnasium's order enforcing and
passive checker, which it does not need; a second row times it inside them). Every speed is also
given as a ratio to the notebook's loop (``ratios`` in the JSON). Figures are the best of
``--repeats`` timings.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker
from stable_baselines3.common.vec_env import VecEnvWrapper

from experiments.notebook_reference import NotebookExecEnv
from sb3_exec import ENV_ID, evaluate, make_config
from sb3_exec.baselines import CLASSICAL
from sb3_exec.vec_env import ExecutionVecEnv

PRESET = "seed"


def _best(fn: Callable[[], float], repeats: int) -> float:
    return min(fn() for _ in range(repeats))


def _one_at_a_time(env: Any, n: int, repeats: int) -> float:
    """Steps per second of an env stepped one step at a time with action 0 (resets included)."""

    def run() -> float:
        start = time.perf_counter()
        for _ in range(n):
            if env.step(0)[2]:
                env.reset()
        return time.perf_counter() - start

    return n / _best(run, repeats)


def notebook_steps_per_s(n: int, repeats: int) -> float:
    """The notebook's env, one Python object, one step at a time."""
    return _one_at_a_time(NotebookExecEnv(seed=0), n, repeats)


def single_env_steps_per_s(n: int, repeats: int, default_wrappers: bool = False) -> float:
    """``gymnasium.make("sb3_exec/Execution-v0")`` (with whatever wrappers it adds: none, as the
    env is registered), one step at a time; ``default_wrappers`` puts gymnasium's default
    ``OrderEnforcing(PassiveEnvChecker(env))`` around it, as ``make`` would for an env registered
    with the defaults."""
    env = gym.make(ENV_ID, preset=PRESET, action_mode="participation")
    if default_wrappers:
        env = OrderEnforcing(PassiveEnvChecker(env))
    env.reset(seed=0)
    return _one_at_a_time(env, n, repeats)


def vec_env_steps_per_s(batch: int, n: int, repeats: int) -> float:
    """``ExecutionVecEnv`` with ``batch`` episodes: env-steps (batch x calls) per second."""
    calls = max(20, n // batch)
    actions = np.zeros(batch, dtype=np.int64)

    def run() -> float:
        env = ExecutionVecEnv(batch, PRESET, action_mode="participation")
        env.seed(0)
        env.reset()
        start = time.perf_counter()
        for _ in range(calls):
            env.step(actions)
        return time.perf_counter() - start

    return calls * batch / _best(run, repeats)


def evaluator_seconds(episodes: int, repeats: int) -> float:
    """Seconds for ``evaluate`` of every baseline over ``episodes`` seeded episodes."""

    def run() -> float:
        start = time.perf_counter()
        evaluate({b: b for b in CLASSICAL}, {"preset": PRESET}, seeds=range(episodes))
        return time.perf_counter() - start

    return _best(run, repeats)


class _Timed(VecEnvWrapper):
    """Accumulates the wall time spent inside the wrapped VecEnv."""

    def __init__(self, venv: Any) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self) -> Any:
        start = time.perf_counter()
        obs = self.venv.reset()
        self.seconds += time.perf_counter() - start
        return obs

    def step_wait(self) -> Any:
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - start
        return out


def env_share_of_training(agent: str, timesteps: int) -> dict[str, float]:
    """Share of an agent's ``learn`` wall time spent in the env (its default YAML setup)."""
    import torch

    from sb3_exec import agents

    torch.set_num_threads(1)
    env = _Timed(agents.make_env(agent, PRESET, seed=0))
    model = agents.make(agent, env, seed=0, preset=PRESET)
    start = time.perf_counter()
    model.learn(timesteps)
    total = time.perf_counter() - start
    return {"total_s": total, "env_s": env.seconds, "share": env.seconds / total}


def run_all(quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Every measurement; ``quick`` shrinks the workloads (for tests)."""
    n = 20_000 if quick else 200_000
    res: dict[str, Any] = {"notebook_steps_per_s": notebook_steps_per_s(n // 4, repeats)}
    res["single_env_steps_per_s"] = single_env_steps_per_s(n // 4, repeats)
    res["single_env_default_wrappers_steps_per_s"] = single_env_steps_per_s(n // 4, repeats, True)
    res["vec_env_steps_per_s"] = {
        b: vec_env_steps_per_s(b, n * (10 if b >= 1024 else 1), repeats) for b in (1, 64, 1024, 4096)
    }
    episodes = 1_000 if quick else 10_000
    secs = evaluator_seconds(episodes, repeats)
    res["evaluator"] = {
        "policies": len(CLASSICAL),
        "episodes": episodes,
        "seconds": secs,
        "episodes_per_s": len(CLASSICAL) * episodes / secs,
    }
    budget = {"ppo": 2_000 if quick else 50_000, "dqn": 500 if quick else 10_000}
    res["training_env_share"] = {a: env_share_of_training(a, t) for a, t in budget.items()}
    ref = res["notebook_steps_per_s"]
    res["ratios"] = {
        "single_env": res["single_env_steps_per_s"] / ref,
        "single_env_default_wrappers": res["single_env_default_wrappers_steps_per_s"] / ref,
        **{f"vec_env_B{b}": v / ref for b, v in res["vec_env_steps_per_s"].items()},
        "evaluator": res["evaluator"]["episodes_per_s"] * make_config(PRESET).T / ref,
    }
    return res


def table(res: dict[str, Any]) -> str:
    """The results as an aligned text table, every speed also as a ratio to the notebook."""
    ref, ratios = res["notebook_steps_per_s"], res["ratios"]
    rows = [
        ("notebook loop (reference)", f"{ref:,.0f} steps/s", "1.00x"),
        (
            "ExecutionEnv via gymnasium.make",
            f"{res['single_env_steps_per_s']:,.0f} steps/s",
            f"{ratios['single_env']:.2f}x",
        ),
        (
            "  the same in gymnasium's default wrappers",
            f"{res['single_env_default_wrappers_steps_per_s']:,.0f} steps/s",
            f"{ratios['single_env_default_wrappers']:.2f}x",
        ),
    ]
    for b, v in res["vec_env_steps_per_s"].items():
        rows.append((f"ExecutionVecEnv B={b}", f"{v:,.0f} env-steps/s", f"{ratios[f'vec_env_B{b}']:.1f}x"))
    ev = res["evaluator"]
    rows.append(
        (
            f"evaluate: {ev['policies']} baselines x {ev['episodes']:,} episodes",
            f"{ev['seconds']:.3f} s ({ev['episodes_per_s']:,.0f} episodes/s)",
            f"{ratios['evaluator']:.1f}x",
        )
    )
    for agent, v in res["training_env_share"].items():
        rows.append((f"env share of {agent.upper()} training", f"{100 * v['share']:.1f}% of {v['total_s']:.1f} s", ""))
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w}}  {b:>{v}}  {c:>7}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m experiments.benchmark``."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--quick", action="store_true", help="small workloads (a smoke test)")
    p.add_argument("--repeats", type=int, default=3, help="timings per figure (best is kept)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    res = run_all(quick=args.quick, repeats=args.repeats)
    print(json.dumps(res, indent=2) if args.json else table(res))


if __name__ == "__main__":
    main()
