"""Double DQN (van Hasselt, Guez & Silver 2016) as a subclass of SB3's DQN.

Only the TD target changes: the online network picks the next action and the target network
values it, ``y = r + gamma (1 - done) Q_target(s', argmax_a Q_online(s', a))``, instead of DQN's
``r + gamma (1 - done) max_a Q_target(s', a)``. Everything else (replay, exploration, target
updates, saving and loading) is SB3's DQN.
"""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch.nn import functional as F


def dqn_target(q_net_target: th.nn.Module, data: ReplayBufferSamples, discounts: th.Tensor | float) -> th.Tensor:
    """DQN's TD target: the target network both picks and values the next action."""
    with th.no_grad():
        next_q = q_net_target(data.next_observations).max(dim=1).values.reshape(-1, 1)
        return data.rewards + (1 - data.dones) * discounts * next_q


def double_q_target(
    q_net: th.nn.Module,
    q_net_target: th.nn.Module,
    data: ReplayBufferSamples,
    discounts: th.Tensor | float,
) -> th.Tensor:
    """Double DQN's TD target: the online network picks, the target network values."""
    with th.no_grad():
        next_actions = q_net(data.next_observations).argmax(dim=1, keepdim=True)
        next_q = th.gather(q_net_target(data.next_observations), dim=1, index=next_actions)
        return data.rewards + (1 - data.dones) * discounts * next_q


class DoubleDQN(DQN):
    """SB3's DQN with the Double-DQN target; takes exactly DQN's arguments."""

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # SB3's DQN.train (2.x), with `double_q_target` in place of the max over the target net.
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            discounts = getattr(data, "discounts", None)
            target_q_values = double_q_target(
                self.q_net, self.q_net_target, data, self.gamma if discounts is None else discounts
            )
            current_q_values = th.gather(self.q_net(data.observations), dim=1, index=data.actions.long())
            loss = F.smooth_l1_loss(current_q_values, target_q_values)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
