"""Almgren-Chriss (2000) closed forms for the discrete linear model, and action grids' floors.

Notation follows the paper: ``X`` shares over ``N`` slices of length ``tau`` days, holdings
``x_0 = X, ..., x_N = 0``, trades ``n_k = x_{k-1} - x_k``, dollar volatility ``sigma`` per
sqrt(day), half-spread ``eps`` ($), temporary impact ``eta`` ($/share per share/day), permanent
impact ``gamma`` ($/share per share), risk aversion ``lam`` (1/$).

- ``E[IS] = 0.5 gamma X^2 + eps sum|n_k| + (eta_tilde/tau) sum n_k^2``,
  ``eta_tilde = eta - 0.5 gamma tau`` (``+`` when a slice pays its own permanent impact);
- ``Var[IS] = sigma^2 tau sum_{k=1..N} x_k^2``;
- the minimiser of ``E + lam Var`` is ``x_j = X sinh(kappa (T - t_j)) / sinh(kappa T)`` with
  ``kappa = arccosh(0.5 kappa_tilde^2 tau^2 + 1) / tau``, ``kappa_tilde^2 = lam sigma^2/eta_tilde``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from sb3_exec.actions import INTERFACES
from sb3_exec.config import ExecConfig
from sb3_exec.costs import ac_eta


@dataclass(frozen=True)
class ACModel:
    """Parameters of the discrete Almgren-Chriss model (paper units, see the module doc)."""

    X: float
    N: int
    tau: float
    sigma: float
    eps: float
    eta: float
    gamma: float
    lam: float = 0.0
    own_impact: bool = False

    @property
    def eta_tilde(self) -> float:
        """Effective quadratic cost coefficient, ``eta -/+ 0.5 gamma tau``."""
        sign = 1.0 if self.own_impact else -1.0
        return self.eta + sign * 0.5 * self.gamma * self.tau

    @property
    def kappa(self) -> float:
        """Urgency (1/day): 0 for a risk-neutral trader (TWAP)."""
        if self.lam == 0.0 or self.sigma == 0.0:
            return 0.0
        if self.eta_tilde <= 0.0:
            raise ValueError(f"eta: eta_tilde = {self.eta_tilde} must be > 0 for a closed form")
        kt2 = self.lam * self.sigma**2 / self.eta_tilde
        return math.acosh(0.5 * kt2 * self.tau**2 + 1.0) / self.tau

    def holdings(self) -> np.ndarray:
        """Optimal holdings ``x_0..x_N`` (``N + 1`` values, ``X`` down to 0)."""
        horizon = self.N * self.tau
        t = np.arange(self.N + 1) * self.tau
        k = self.kappa
        if k * horizon < 1e-12:
            return self.X * (horizon - t) / horizon
        return self.X * np.sinh(k * (horizon - t)) / np.sinh(k * horizon)

    def expected_cost(self, holdings: np.ndarray) -> float:
        """``E[IS]`` ($) of a static schedule given by its holdings ``x_0..x_N``."""
        n = -np.diff(np.asarray(holdings, dtype=np.float64))
        return float(
            0.5 * self.gamma * self.X**2 + self.eps * np.abs(n).sum() + self.eta_tilde / self.tau * (n**2).sum()
        )

    def variance(self, holdings: np.ndarray) -> float:
        """``Var[IS]`` ($^2) of a static schedule: ``sigma^2 tau sum_{k>=1} x_k^2``."""
        x = np.asarray(holdings, dtype=np.float64)[1:]
        return float(self.sigma**2 * self.tau * (x**2).sum())

    def objective(self, holdings: np.ndarray) -> float:
        """``E + lam Var`` ($)."""
        return self.expected_cost(holdings) + self.lam * self.variance(holdings)


def ac_model(cfg: ExecConfig) -> ACModel:
    """The Almgren-Chriss model of a config (exact for ``temp_impact="rate"``; other impact kinds
    are linearised, ``costs.ac_eta``)."""
    return ACModel(
        X=cfg.Q0,
        N=cfg.T,
        tau=cfg.dt,
        sigma=cfg.sigma_dollars,
        eps=cfg.spread_bps * 1e-4 * cfg.p0,
        eta=ac_eta(cfg),
        gamma=cfg.kappa,
        lam=cfg.risk_aversion,
        own_impact=cfg.own_impact,
    )


def ac_holdings(cfg: ExecConfig) -> np.ndarray:
    """The closed-form holdings schedule for the config's risk aversion (TWAP when it is 0)."""
    return ac_model(cfg).holdings()


def closed_form_exact(cfg: ExecConfig) -> bool:
    """Whether a config is the exact Almgren-Chriss linear model: impact linear in the trading
    rate, no microstructure noise, constant liquidity, no participation penalty."""
    stochastic_liquidity = (
        cfg.vol_sd > 0 or cfg.volume_model != "normal" or cfg.volume_u_shape > 0 or cfg.spread_model != "constant"
    )
    penalties = cfg.aggressiveness_penalty > 0 or cfg.participation_change_penalty > 0
    return cfg.temp_impact == "rate" and cfg.noise_sd == 0 and not stochastic_liquidity and not penalties


def analytic_optimum_bps(cfg: ExecConfig) -> float | None:
    """The exact optimum of the expected objective in bps, where the model has one, else None.

    The closed form is the exact optimum when the model is the Almgren-Chriss linear model:
    impact linear in the trading rate, no microstructure noise, constant volume (so the
    participation cap is known) that the optimal schedule respects.
    """
    if not closed_form_exact(cfg):
        return None
    model = ac_model(cfg)
    x = model.holdings()
    if (-np.diff(x)).max() > cfg.max_participation * cfg.vol_mu * (1 + 1e-12):
        return None
    return model.objective(x) / cfg.notional * 1e4


def grid_floor_pct(
    cfg: ExecConfig, action_mode: str | None = None, brute_force_limit: int = 2_000_000, grid_points: int = 20_001
) -> float:
    """Regret (% of the analytic optimum) of the best schedule an action mode can reach.

    Every mode but ``participation`` trades a fraction of the inventory left (the last slice
    trades it all), so a schedule is a sequence of fractions. With few slices every sequence is
    tried (exact); otherwise a dynamic programme over the inventory (``grid_points`` states,
    linear interpolation; error far below 1e-4 %) finds the best. ``fraction`` can express any
    schedule: 0. Needs a model with an analytic optimum (``ac2000``, ``ac60``).
    """
    optimum = analytic_optimum_bps(cfg)
    if optimum is None:
        raise ValueError("preset: a grid floor needs a model with an analytic optimum (ac2000, ac60)")
    mode = action_mode or cfg.action_mode
    iface = INTERFACES.get(mode)
    if iface is not None and iface.any_fraction:
        return 0.0
    model = ac_model(cfg)
    N, X = model.N, model.X
    if iface is None or iface.fractions(cfg, N) is None:
        grids = [name for name, i in INTERFACES.items() if i.any_fraction or i.fractions(cfg, N) is not None]
        raise ValueError(f"action_mode: grid floors exist for {grids}, not {mode!r}")
    q2 = model.eta_tilde / model.tau  # cost per share^2 traded in a slice
    risk = model.lam * model.sigma**2 * model.tau  # cost per share^2 held after a slice
    choices = [cast(np.ndarray, iface.fractions(cfg, N - k)) for k in range(N - 1)]  # not None: checked for N above
    if N == 1:
        best = model.eps * X + q2 * X**2
    elif np.prod([float(len(c)) for c in choices]) <= brute_force_limit:
        keep = np.ones(1)
        holdings = [np.full(1, X)]
        for c in choices:  # every sequence of fractions, as rows
            keep = (keep[:, None] * (1.0 - c)[None, :]).ravel()
            holdings = [np.repeat(h, len(c)) for h in holdings] + [X * keep]
        H = np.column_stack([*holdings, np.zeros_like(keep)])
        n = -np.diff(H, axis=1)
        total = model.eps * n.sum(1) + q2 * (n**2).sum(1) + risk * (H[:, 1:] ** 2).sum(1)
        best = float(total.min())
    else:
        xs = np.linspace(0.0, X, grid_points)
        value = model.eps * xs + q2 * xs**2  # the last slice trades what is left
        for k in range(N - 2, -1, -1):
            after = xs[:, None] * (1.0 - choices[k][None, :])
            n = xs[:, None] - after
            cost = model.eps * n + q2 * n**2 + risk * after**2 + np.interp(after, xs, value)
            value = cost.min(axis=1)
        best = float(value[-1])
    floor_bps = (best + 0.5 * model.gamma * X**2) / cfg.notional * 1e4
    return 100.0 * (floor_bps - optimum) / optimum
