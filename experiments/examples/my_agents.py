"""An agent of one's own for ``experiments/configs/examples/own_agents.yaml``: a factory function
``(env, seed, **hyperparams) -> model``, the route for anything a YAML entry cannot say (here a
learning-rate schedule, a callable) or for one's own SB3 subclass.

The model needs SB3's ``learn``, ``predict``, ``save`` and a classmethod ``load`` (``compare``
trains it, saves it in its run folder and reloads it to resume); any SB3 or sb3-contrib algorithm,
or a subclass of one, has them.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import VecEnv


def make(
    env: VecEnv,
    seed: int,
    lr_start: float = 1e-3,
    lr_end: float = 1e-4,
    net_arch: tuple[int, ...] = (64, 64),
    **dqn_kwargs: Any,
) -> DQN:
    """SB3 DQN with a learning rate decaying linearly from ``lr_start`` to ``lr_end`` over training.

    :param env: the training env ``experiments.compare`` builds for the entry's ``action_mode``
    :param seed: the run's training seed (use it: runs are reproducible)
    :param lr_start: learning rate at the start of training
    :param lr_end: learning rate at the end of training
    :param net_arch: hidden layers of the Q-network
    :param dqn_kwargs: further SB3 ``DQN`` arguments (``learning_starts``, ``gamma``...)
    """

    def schedule(progress_remaining: float) -> float:  # 1 at the start of training, 0 at its end
        return lr_end + (lr_start - lr_end) * progress_remaining

    return DQN(
        "MlpPolicy", env, seed=seed, learning_rate=schedule, policy_kwargs={"net_arch": list(net_arch)}, **dqn_kwargs
    )
