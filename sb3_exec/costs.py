"""The cost model: each temporary-impact kind once, with its cost and its planning coefficients.

A kind of temporary impact (``ExecConfig.temp_impact``) is one small object in ``IMPACTS`` that
gives (1) the impact in $/share of trading ``q`` shares in a slice, which the dynamics charge
(``bind(cfg)``: a function of ``(q, volume, mid)`` with the config's constants folded in),
and (2) where the impact is additive in dollars, the coefficients ``(b, c)`` of the slice's cost
``b q^2 + c q^1.5`` that the planners (water-filling, the MPC, the oracle, the Almgren-Chriss
closed form) minimise. Changing a kind here changes the env and every planner together.

Permanent impact (``kappa``) paid by later slices adds ``kappa * sum_{j<t} q_j q_t = kappa/2
(Q^2 - sum q^2)`` to a schedule's cost (``+`` where a slice pays its own impact), hence the
``permanent_pairing`` term added to ``b``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sb3_exec.config import ExecConfig


def _linearised_eta(cfg: ExecConfig) -> float:
    """Impact in participation linearised at the arrival price and the mean volume."""
    return cfg.eta * cfg.p0 * cfg.dt / cfg.vol_mu


class Participation:
    """The notebook's impact: a fraction ``eta * q/V`` of the current mid (not additive)."""

    additive = False
    linear = True

    ac_eta = staticmethod(_linearised_eta)

    @staticmethod
    def bind(cfg: ExecConfig) -> Callable[[Any, Any, Any], Any]:
        eta = cfg.eta
        return lambda q, volume, mid: eta * (q / volume) * mid


class Rate:
    """Almgren-Chriss: ``eta * q / dt`` dollars per share (linear in the trading rate)."""

    additive = True
    linear = True

    @staticmethod
    def bind(cfg: ExecConfig) -> Callable[[Any, Any, Any], Any]:
        k = cfg.eta / cfg.dt
        return lambda q, volume, mid: k * q

    @staticmethod
    def coefficients(cfg: ExecConfig, volume: np.ndarray, own: float) -> tuple[np.ndarray, np.ndarray]:
        return np.full_like(volume, cfg.eta / cfg.dt) + own, np.zeros_like(volume)

    @staticmethod
    def ac_eta(cfg: ExecConfig) -> float:
        return cfg.eta


class Linear:
    """Additive and linear in participation: ``eta * p0 * q/V`` dollars per share."""

    additive = True
    linear = True

    @staticmethod
    def bind(cfg: ExecConfig) -> Callable[[Any, Any, Any], Any]:
        k = cfg.eta * cfg.p0
        return lambda q, volume, mid: k * (q / volume)

    ac_eta = staticmethod(_linearised_eta)

    @staticmethod
    def coefficients(cfg: ExecConfig, volume: np.ndarray, own: float) -> tuple[np.ndarray, np.ndarray]:
        return cfg.eta * cfg.p0 / volume + own, np.zeros_like(volume)


class Sqrt:
    """Square-root law: ``eta * p0 * sqrt(q/V)`` dollars per share."""

    additive = True
    linear = False

    @staticmethod
    def bind(cfg: ExecConfig) -> Callable[[Any, Any, Any], Any]:
        k = cfg.eta * cfg.p0
        return lambda q, volume, mid: k * (q / volume) ** 0.5

    ac_eta = staticmethod(_linearised_eta)

    @staticmethod
    def coefficients(cfg: ExecConfig, volume: np.ndarray, own: float) -> tuple[np.ndarray, np.ndarray]:
        return np.full_like(volume, max(own, 0.0)), cfg.eta * cfg.p0 / np.sqrt(volume)


IMPACTS: dict[str, Any] = {"participation": Participation, "rate": Rate, "linear": Linear, "sqrt": Sqrt}


def impact(cfg: ExecConfig) -> Any:
    """The config's temporary-impact kind (an entry of ``IMPACTS``)."""
    return IMPACTS[cfg.temp_impact]


def permanent_pairing(cfg: ExecConfig) -> float:
    """What permanent impact adds to a slice's quadratic coefficient (see the module doc)."""
    return 0.5 * cfg.kappa if cfg.own_impact else -0.5 * cfg.kappa


def ac_eta(cfg: ExecConfig) -> float:
    """The Almgren-Chriss ``eta`` ($/share per share/day) of a config: exact for ``rate``; impact
    in participation is linearised at the arrival price and the mean volume,
    ``eta * p0 * dt / vol_mu`` (``sqrt`` likewise: a rough stand-in, used only for lambda > 0)."""
    return float(impact(cfg).ac_eta(cfg))


def schedule_cost_coefficients(
    cfg: ExecConfig, volume: np.ndarray, half_spread: np.ndarray, mid_sched: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, c)`` with the schedule cost of an episode equal to
    ``sum_t a_t q_t + b_t q_t^2 + c_t q_t^1.5`` plus a constant, for additive impact."""
    if not impact(cfg).additive:
        raise ValueError(
            f"temp_impact: {cfg.temp_impact!r} is not additive in dollars; planners need 'rate', 'linear' or 'sqrt'"
        )
    a = half_spread + cfg.sign * (cfg.p0 - mid_sched)  # the predictable drift's cost per share
    b, c = impact(cfg).coefficients(cfg, volume, permanent_pairing(cfg))
    return a, b, c


def deadline_coefficients(
    cfg: ExecConfig, a: np.ndarray, b: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, c)`` of the forced liquidation of what is left after the last slice, from the
    last slice's coefficients: the spread (and drift) as usual, ``deadline_penalty`` times the
    temporary impact. Its permanent-impact pairing is that of one more slice (exact without
    permanent impact)."""
    pen = cfg.deadline_penalty
    b_d, c_d = b * pen, c * pen
    if impact(cfg).linear:
        own = permanent_pairing(cfg)
        b_d = (b - own) * pen + own
    return a, b_d, c_d


def aggressiveness_coefficient(cfg: ExecConfig, inv_volume_sq: Any) -> Any:
    """What the aggressiveness penalty ``w bps * (q/V)^2`` adds to a lit trade's quadratic
    coefficient, given ``1/V^2`` (or its expectation)."""
    return cfg.aggressiveness_penalty * (cfg.notional / 1e4) * inv_volume_sq
