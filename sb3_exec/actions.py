"""The action interfaces in one table: each one's space and how a batch of actions becomes orders.

An interface maps an agent's action to the shares it asks for at a slice (the dynamics then clip
them to the inventory and the participation cap) and, with a dark venue, to a dark order. The
single env, the batched env, ``evaluate`` and the grid floors (``analytic.grid_floor_pct``) all
read ``INTERFACES``; adding an interface is adding one entry here.

| name | space | shares asked for |
|---|---|---|
| ``participation`` | ``Discrete(action_levels)`` | ``a/(L-1) * max_participation * V_t`` (the notebook's grid; the deadline liquidates what is left) |
| ``twap_multiple`` | ``Discrete(len(twap_multiples))`` | ``twap_multiples[a] * x / slices_left`` |
| ``continuous`` | ``Box(-1, 1, (1,))`` | multiple ``(a+1)/2 * max(twap_multiples)`` of ``x / slices_left`` |
| ``fraction`` | ``Box(-1, 1, (1,))`` | fraction ``(a+1)/2`` of ``x`` |
| ``fraction_grid`` | ``Discrete(len(fraction_grid))`` | fraction ``fraction_grid[a]`` of ``x`` |
| ``residual`` | ``Box(-1, 1, (1,))`` | ``base * m(a)``: a multiplier ``m`` in ``[1/r, r]`` on a base policy's order (``sb3_exec.wrappers``, ``policies.Residual``) |
| ``participation_rate`` | ``Box(-1, 1, (1,))`` | ``(a+1)/2 * max_participation * V_t`` (the deadline liquidates what is left) |
| ``pace_multiple`` | ``Discrete(len(twap_multiples))`` | ``twap_multiples[a] * x * V_t / R_t``: a multiple of the inventory's share of the expected remaining volume ``R_t`` (``market.remaining_volume``; needs ``pace_features``) |
| ``pace_continuous`` | ``Box(-1, 1, (1,))`` | the same with the multiple ``(a+1)/2 * max(twap_multiples)`` |

All but ``participation``, ``participation_rate`` and ``residual`` trade everything left in the last slice
(for the pace interfaces ``R_t = V_t`` there: multiples of 1 and above sell everything, lower ones
leave the rest to the deadline's forced liquidation). With a dark
venue (``dark_share > 0``) every interface also sizes a dark order: the discrete ones become the
product grid ``Discrete(n * len(dark_levels))`` (``a = lit * len(dark_levels) + dark``, the dark
order ``dark_levels[dark] * x``), the box ones ``Box(-1, 1, (2,))`` (dark order ``(a[1]+1)/2 * x``;
for ``residual`` the multiplier on the base's dark order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from sb3_exec.config import ACTION_MODES, ExecConfig
from sb3_exec.dynamics import ARRAY, Market, State, flat_index


def _unit(ops: Any, a: Any) -> Any:
    """A box action in [-1, 1] (clipped) as a fraction in [0, 1]."""
    return (ops.minimum(ops.maximum(a, -1.0), 1.0) + 1.0) * 0.5


def residual_multiplier(cfg: ExecConfig, ops: Any, action: Any) -> Any:
    """The residual's multiplier: ``1 + (r-1) a`` for ``a >= 0`` and ``1 / (1 + (r-1) |a|)``
    below (``r = residual_range``), so ``a = 0`` is the base, ``+-1`` are ``r`` and ``1/r``, and
    ``-a`` undoes ``a``. Plain arithmetic (no ``pow``), so both env paths agree bit for bit."""
    a = ops.minimum(ops.maximum(action, -1.0), 1.0)
    k = cfg.residual_range - 1.0
    return (1.0 + k * ops.maximum(a, 0.0)) / (1.0 + k * ops.maximum(-a, 0.0))


class Interface:
    """One action interface: ``discrete`` ones index a grid, box ones read floats in [-1, 1]."""

    name = ""
    discrete = True
    needs_base = False  # acts on a base policy's order (supplied by a wrapper or a combinator)
    needs_share = False  # reads the slice's share of the expected remaining volume (``share``)
    any_fraction = False  # can trade any fraction of the inventory (its grid floor is the optimum)

    def levels(self, cfg: ExecConfig) -> int:
        """Number of lit actions of a discrete interface."""
        raise NotImplementedError

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        """Shares asked for at slice ``t`` with ``x`` held; ``base``: the base policy's order;
        ``share``: ``V_t / R_t``, the slice's share of the expected remaining volume (read only
        by the interfaces that set ``needs_share``)."""
        raise NotImplementedError

    def fractions(self, cfg: ExecConfig, slices_left: int) -> np.ndarray | None:
        """The fractions of the inventory the interface can trade at a slice (for grid floors);
        None where it is not a fraction of the inventory."""
        return None


class Participation(Interface):
    name = "participation"

    def levels(self, cfg: ExecConfig) -> int:
        return cfg.action_levels

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return a * (cfg.max_participation / (cfg.action_levels - 1)) * volume


class TwapMultiple(Interface):
    name = "twap_multiple"

    def levels(self, cfg: ExecConfig) -> int:
        return len(cfg.twap_multiples)

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        slices_left = ops.maximum(cfg.T - t, 1)
        return ops.where(slices_left == 1, x, ops.lookup(cfg.twap_multiples, a) * x / slices_left)

    def fractions(self, cfg: ExecConfig, slices_left: int) -> np.ndarray:
        return np.minimum(np.asarray(cfg.twap_multiples) / slices_left, 1.0)


class Continuous(Interface):
    name = "continuous"
    discrete = False

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        slices_left = ops.maximum(cfg.T - t, 1)
        mult = (ops.minimum(ops.maximum(a, -1.0), 1.0) + 1.0) * (0.5 * cfg.twap_multiples[-1])
        return ops.where(slices_left == 1, x, mult * x / slices_left)

    def fractions(self, cfg: ExecConfig, slices_left: int) -> np.ndarray:
        # a fine grid stands in for the interval of multiples
        return np.minimum(np.linspace(0.0, cfg.twap_multiples[-1], 401) / slices_left, 1.0)


class Fraction(Interface):
    name = "fraction"
    discrete = False
    any_fraction = True

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return ops.where(ops.maximum(cfg.T - t, 1) == 1, x, _unit(ops, a) * x)


class FractionGrid(Interface):
    name = "fraction_grid"

    def levels(self, cfg: ExecConfig) -> int:
        return len(cfg.fraction_grid)

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return ops.where(ops.maximum(cfg.T - t, 1) == 1, x, ops.lookup(cfg.fraction_grid, a) * x)

    def fractions(self, cfg: ExecConfig, slices_left: int) -> np.ndarray:
        return np.asarray(cfg.fraction_grid)


class Residual(Interface):
    name = "residual"
    discrete = False
    needs_base = True

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return base * residual_multiplier(cfg, ops, a)  # the base may leave some to the deadline


class ParticipationRate(Interface):
    name = "participation_rate"
    discrete = False

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return _unit(ops, a) * cfg.max_participation * volume


class PaceMultiple(Interface):
    name = "pace_multiple"
    needs_share = True

    def levels(self, cfg: ExecConfig) -> int:
        return len(cfg.twap_multiples)

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return ops.lookup(cfg.twap_multiples, a) * x * share


class PaceContinuous(Interface):
    name = "pace_continuous"
    discrete = False
    needs_share = True

    def lit(self, cfg: ExecConfig, ops: Any, a: Any, t: Any, x: Any, volume: Any, base: Any, share: Any = 0.0) -> Any:
        return _unit(ops, a) * cfg.twap_multiples[-1] * x * share


INTERFACES: dict[str, Interface] = {
    i.name: i
    for i in (
        Participation(),
        TwapMultiple(),
        Continuous(),
        Fraction(),
        FractionGrid(),
        Residual(),
        ParticipationRate(),
        PaceMultiple(),
        PaceContinuous(),
    )
}
assert tuple(INTERFACES) == ACTION_MODES, "config.ACTION_MODES names the interfaces of this table"
BOX_MODES = tuple(name for name, i in INTERFACES.items() if not i.discrete)


def interface(cfg: ExecConfig) -> Interface:
    """The config's action interface."""
    return INTERFACES[cfg.action_mode]


def action_space(cfg: ExecConfig) -> spaces.Space:
    """The action space of a config's ``action_mode`` (see the module doc)."""
    iface = interface(cfg)
    dark = len(cfg.dark_levels) if cfg.dark_venue else 1  # the dark order multiplies the grid
    if iface.discrete:
        return spaces.Discrete(iface.levels(cfg) * dark)
    return spaces.Box(-1.0, 1.0, shape=(2 if cfg.dark_venue else 1,), dtype=np.float32)


def split(cfg: ExecConfig, action: Any) -> tuple[Any, Any]:
    """(lit action, dark action or None): with a dark venue a discrete action ``a`` is the pair
    ``(a // len(dark_levels), a % len(dark_levels))`` and a box action is ``(a[..., 0], a[..., 1])``."""
    if not cfg.dark_venue:
        return action, None
    if not interface(cfg).discrete:
        return action[..., 0], action[..., 1]
    n = len(cfg.dark_levels)
    return action // n, action % n


def dark_order(cfg: ExecConfig, ops: Any, dark_action: Any, x: Any, base: Any = 0.0) -> Any:
    """Shares posted in the dark venue: a level of ``dark_levels`` (discrete) or a fraction
    ``(a+1)/2`` (box) of the inventory left; for ``residual`` the base's dark order ``base``
    times the multiplier."""
    iface = interface(cfg)
    if iface.needs_base:
        return base * residual_multiplier(cfg, ops, dark_action)
    if not iface.discrete:
        return _unit(ops, dark_action) * x
    return ops.lookup(cfg.dark_levels, dark_action) * x


def orders(
    cfg: ExecConfig, market: Market, state: State, actions: np.ndarray, base: tuple[Any, Any] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(lit shares, dark order or None)`` for a batch of actions, ``(B,)`` ints or ``(B, k)``
    floats; ``base``: the base policy's ``(lit, dark)`` orders for ``residual``."""
    iface = interface(cfg)
    idx = flat_index(market, state)
    if iface.discrete:
        a: np.ndarray = np.asarray(actions, dtype=np.int64).reshape(-1)
    else:
        a = np.asarray(actions, dtype=np.float64).reshape(len(idx), -1)
    lit, dark = split(cfg, a)
    if not iface.discrete and not cfg.dark_venue:
        lit = lit[:, 0]
    if iface.discrete and iface.name == "participation":
        lit = np.asarray(lit, dtype=np.float64)
    volume = market.volume.take(idx)
    share = volume / market.remaining.take(idx) if iface.needs_share else 0.0
    shares = iface.lit(cfg, ARRAY, lit, state.t, state.x, volume, base[0], share)
    return shares, None if dark is None else dark_order(cfg, ARRAY, dark, state.x, base[1])
