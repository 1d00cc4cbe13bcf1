"""sb3-exec: optimal trade execution for Stable-Baselines3, with exact references.

``import sb3_exec`` registers ``sb3_exec/Execution-v0`` with Gymnasium.
"""

from __future__ import annotations

import gymnasium as gym

from sb3_exec.analytic import ACModel, ac_holdings, ac_model, analytic_optimum_bps
from sb3_exec.baselines import POV, TWAP, VWAP, AlmgrenChriss, Immediate, Policy
from sb3_exec.config import PRESETS, ExecConfig, make_config
from sb3_exec.env import ExecutionEnv
from sb3_exec.evaluation import Evaluation, evaluate
from sb3_exec.policies import CallablePolicy, ModelPolicy, load_run
from sb3_exec.wrappers import make_env, make_vec_env

__version__ = "0.1.0"
ENV_ID = "sb3_exec/Execution-v0"

if ENV_ID not in gym.registry:
    # Without gymnasium's OrderEnforcing and PassiveEnvChecker: the env refuses a step before
    # reset itself, and the tests run gymnasium's and SB3's full env checkers on every preset and
    # action mode; the two wrappers would add a fifth to each step's time (experiments.benchmark).
    # gymnasium.make(..., disable_env_checker=False) adds the checker back.
    gym.register(id=ENV_ID, entry_point="sb3_exec.wrappers:make_env", order_enforce=False, disable_env_checker=True)

__all__ = [
    "ENV_ID",
    "POV",
    "PRESETS",
    "TWAP",
    "VWAP",
    "ACModel",
    "AlmgrenChriss",
    "CallablePolicy",
    "Evaluation",
    "ExecConfig",
    "ExecutionEnv",
    "Immediate",
    "ModelPolicy",
    "Policy",
    "ac_holdings",
    "ac_model",
    "analytic_optimum_bps",
    "evaluate",
    "load_run",
    "make_config",
    "make_env",
    "make_vec_env",
]
