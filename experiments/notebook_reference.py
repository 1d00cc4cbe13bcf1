"""A faithful copy of the original notebook's environment step, for speed comparisons only.

The model and the code path are the notebook's (``seed/``, section 2): one Python object per
episode, scalar arithmetic per step, a numpy draw per step. Two changes, neither of which
affects speed: draws come from a seeded ``numpy.random.Generator`` instead of the global RNG,
and ``_state`` clamps ``t`` so an episode that reaches the deadline does not raise IndexError
(the notebook's defect 1). Do not use it for anything but the benchmark.
"""

from __future__ import annotations

import math

import numpy as np


class NotebookExecEnv:
    """The notebook's ``ExecEnv`` with its default ``ExecConfig``."""

    T, Q0, p0, sigma, dt = 40, 100_000, 100.0, 0.02, 1 / 78
    kappa, eta, spread_bps, vol_mu, vol_sd = 1e-6, 5e-5, 5, 2e6, 5e5
    noise_sd, max_participation, action_levels, buy = 0.002, 0.2, 7, False

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.action_space = self.action_levels
        self.reset()

    def reset(self) -> np.ndarray:
        self.t = 0
        self.p = self.p0
        self.q_rem = self.Q0
        self.perm_impact_cum = 0.0
        self.last_participation = 0.0
        self._gen_paths()
        return self._state()

    def _gen_paths(self) -> None:
        sigma_step = self.sigma * math.sqrt(self.dt)
        shocks = self.rng.normal(0, sigma_step, size=self.T)
        self.mid_exo = self.p0 * (1 + np.cumsum(shocks))
        self.market_vol = np.maximum(self.rng.normal(self.vol_mu, self.vol_sd, size=self.T), 1e3)
        self.half_spread = (self.spread_bps / 1e4) * self.p0

    def _state(self) -> np.ndarray:
        t = min(self.t, self.T - 1)  # the notebook indexes market_vol[T] here and crashes
        frac_time = self.t / max(1, self.T - 1)
        frac_inv = self.q_rem / max(1, self.Q0)
        avg_vol = self.market_vol[t] / (self.vol_mu + 1e-9)
        return np.array([frac_time, frac_inv, avg_vol, self.last_participation], dtype=np.float32)

    def step(self, action: int):
        assert 0 <= action < self.action_space
        if self.q_rem <= 0 or self.t >= self.T:
            return self._state(), 0.0, True, {}
        part = (action / (self.action_space - 1)) * self.max_participation
        mkt_vol = self.market_vol[self.t]
        q_exec = min(self.q_rem, part * mkt_vol)
        sign = -1 if not self.buy else +1
        self.perm_impact_cum += sign * self.kappa * q_exec
        tmp_imp = self.eta * (q_exec / max(1.0, mkt_vol))
        micro_noise = self.rng.normal(0, self.noise_sd)
        self.p = max(0.01, self.mid_exo[self.t] + self.perm_impact_cum + micro_noise)
        if not self.buy:
            px_exec = self.p - self.half_spread - tmp_imp * self.p
        else:
            px_exec = self.p + self.half_spread + tmp_imp * self.p
        self.q_rem -= q_exec
        self.t += 1
        self.last_participation = part
        arrival = self.p0
        inc_cost = (arrival - px_exec) * q_exec if not self.buy else (px_exec - arrival) * q_exec
        reward = -inc_cost / max(1.0, self.Q0 * self.p0)
        done = (self.q_rem <= 1e-8) or (self.t >= self.T)
        if done and self.q_rem > 0:
            pen_tmp = self.eta * (self.q_rem / (self.market_vol[self.t - 1] if self.t > 0 else self.vol_mu)) * 5.0
            worst_px = (
                (self.p - self.half_spread - pen_tmp * self.p)
                if not self.buy
                else (self.p + self.half_spread + pen_tmp * self.p)
            )
            rem_cost = ((arrival - worst_px) if not self.buy else (worst_px - arrival)) * self.q_rem
            reward += -rem_cost / max(1.0, self.Q0 * self.p0)
            self.q_rem = 0.0
        return (
            self._state(),
            float(reward),
            done,
            {"q_exec": q_exec, "px_exec": float(px_exec), "mid": float(self.p), "part": float(part)},
        )
