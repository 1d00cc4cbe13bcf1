"""Validated execution-model configuration and named presets (imports nothing of ``sb3_exec``).

Owns the model's parameters (the order, the market, the costs, the objective), the env options an
agent trains with (its action interface's parameters, ``action_mode``, ``reward``), their
validation, and the named presets.

``ExecConfig`` keeps every field name and default of the original notebook's ``ExecConfig``
(``T``, ``Q0``, ``p0``, ``sigma``, ``dt``, ``kappa``, ``eta``, ``spread_bps``, ``vol_mu``,
``vol_sd``, ``noise_sd``, ``max_participation``, ``action_levels``, ``buy``) and adds the fields
that let one implementation of the dynamics express both the notebook's model and the exact
Almgren-Chriss (2000) linear model. Units are in the field docs; ``sigma`` is a daily fraction of
the arrival price and ``dt`` a slice length in days throughout.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

SIDES = ("sell", "buy")
TEMP_IMPACTS = ("participation", "rate", "linear", "sqrt")
VOLUME_MODELS = ("normal", "log_ar1")
SPREAD_MODELS = ("constant", "log_ar1")
# the fields of an agent's action interface (the rest describe the market, the order and the costs)
INTERFACE_FIELDS = (
    "action_mode",
    "action_levels",
    "twap_multiples",
    "fraction_grid",
    "dark_levels",
    "residual_range",
    "residual_base",
    "pace_features",
)
# the names of the action interfaces; ``sb3_exec.actions.INTERFACES`` defines them (and checks the names)
ACTION_MODES = (
    "participation",
    "twap_multiple",
    "continuous",
    "fraction",
    "fraction_grid",
    "residual",
    "participation_rate",
    "pace_multiple",
    "pace_continuous",
)
PACE_MODES = ("pace_multiple", "pace_continuous")  # the interfaces that need ``pace_features``
REWARDS = ("shortfall", "schedule")
DEFAULT_TWAP_MULTIPLES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
# 0 and 20 fractions of the remaining inventory spaced geometrically from 1% to 100%
DEFAULT_FRACTION_GRID = (0.0, *(10.0 ** (-2.0 + 2.0 * k / 19) for k in range(19)), 1.0)


@dataclass(frozen=True)
class ExecConfig:
    """One execution problem: the market model, the order, and how an agent acts on it.

    The notebook's fields keep their names and defaults; the defaults are the ``seed`` preset.

    :param T: number of trading slices (the deadline is the end of slice ``T-1``)
    :param Q0: shares to trade (the parent order)
    :param p0: arrival mid price ($/share)
    :param sigma: volatility of the mid, a daily fraction of ``p0`` (arithmetic Brownian motion
        with dollar volatility ``p0 * sigma`` per sqrt(day))
    :param dt: slice length in days
    :param kappa: permanent impact, $/share of price move per share traded (AC's gamma)
    :param eta: temporary impact coefficient; its unit depends on ``temp_impact``
    :param spread_bps: half-spread paid on every share, basis points of ``p0`` (AC's epsilon)
    :param vol_mu: mean market volume per slice (shares)
    :param vol_sd: standard deviation of market volume per slice (shares); volumes are floored
        at 1,000 shares as in the notebook
    :param noise_sd: microstructure noise on the execution mid ($/share), i.i.d. per slice
    :param max_participation: cap on the order's share of a slice's market volume, in (0, 1];
        it binds every policy, baselines and the deadline-free slices alike
    :param action_levels: number of discrete participation levels in ``action_mode="participation"``
    :param side: ``"sell"`` or ``"buy"``; the notebook's ``buy=True`` is accepted too
    :param risk_aversion: Almgren-Chriss lambda (1/$); adds ``lambda * (p0*sigma)^2 * dt * x_t^2``
        per slice, ``x_t`` the shares left after the slice, to the objective
    :param temp_impact: ``"participation"`` (the notebook: a fraction ``eta * q/V`` of the mid),
        ``"rate"`` (Almgren-Chriss: ``eta * q/dt`` dollars per share), ``"linear"`` (additive:
        ``eta * p0 * q/V`` dollars per share) or ``"sqrt"`` (``eta * p0 * sqrt(q/V)``)
    :param volume_model: ``"normal"`` (the notebook: i.i.d. ``N(vol_mu * profile_t, vol_sd)``)
        or ``"log_ar1"`` (``vol_mu * profile_t * exp(z_t - s^2/2)``, ``z`` a stationary AR(1)
        with coefficient ``volume_phi`` and innovation SD ``volume_innov_sd``, so the mean of
        every slice is ``vol_mu * profile_t``); volumes are floored at 1,000 shares
    :param volume_phi: persistence of log-volume in ``log_ar1``, in [0, 1)
    :param volume_innov_sd: innovation SD of log-volume in ``log_ar1``
    :param volume_u_shape: curvature ``u`` of the expected intraday profile
        ``profile_t ∝ 1 + u (2 t/(T-1) - 1)^2``, normalised to average 1 (0: flat)
    :param spread_model: ``"constant"`` (the notebook) or ``"log_ar1"``: the half-spread is
        ``spread_bps * exp(y_t - s^2/2)`` with ``y`` a stationary AR(1) (``spread_phi``,
        ``spread_innov_sd``), always positive, mean ``spread_bps``
    :param own_impact: whether a slice's permanent impact moves the price it trades at (the
        notebook: True) or only later slices (Almgren-Chriss: False)
    :param shock_before_trade: whether slice ``t``'s price innovation arrives before its trade
        (the notebook: True) or after it (Almgren-Chriss: False)
    :param deadline_penalty: multiplier on the temporary impact of the forced liquidation of any
        inventory left after the last slice (the notebook: 5)
    :param twap_multiples: the action grid of ``action_mode="twap_multiple"``: multiples of the
        remaining-TWAP slice ``x / slices_left``; must contain 0 and 1
    :param signal_strength: an observed order-flow signal ``s_t`` (stationary AR(1), unit
        variance) shifts slice ``t``'s price innovation by ``signal_strength * s_t`` slice
        volatilities (``p0 * sigma * sqrt(dt)``): positive flow pushes the price up. 0: off. When
        on, the observation gains three tape/LOB features (signal, depth imbalance, last volume)
    :param signal_phi: persistence of the order-flow signal, in [0, 1)
    :param dark_share: a midpoint (dark) venue whose hidden liquidity per slice averages this
        fraction of the slice's market volume (lognormal, i.i.d.; 0: no dark venue). Dark orders
        fill before the lit order, at the slice's mid with no spread and no impact, up to the
        dark liquidity; what does not fill stays in inventory
    :param dark_log_sd: log SD of the dark liquidity
    :param dark_adverse_bps: adverse-selection cost per dark share, bps of ``p0``
    :param dark_levels: with a dark venue, the dark order as fractions of the inventory left:
        discrete action modes become the product grid (lit action x dark level), the box modes
        gain a second dimension mapped linearly to a fraction in [0, 1]
    :param aggressiveness_penalty: reward penalty in bps per unit of squared participation,
        ``w * (q_t/V_t)^2`` each slice (0: off)
    :param participation_change_penalty: reward penalty in bps per unit of squared change in
        participation between consecutive slices, ``w * (q_t/V_t - q_{t-1}/V_{t-1})^2`` (0: off);
        both penalties count in ``objective_bps`` and are reported as ``penalty_bps``
    :param fraction_grid: the action grid of ``action_mode="fraction_grid"``: fractions of the
        remaining inventory in [0, 1]; must contain 0 and 1 (default: 0 and 20 geometric steps
        from 1% to 100%)
    :param action_mode: how an agent's action maps to shares: ``"participation"`` (the notebook's
        grid of ``action_levels`` participation rates), ``"twap_multiple"`` (a multiple from
        ``twap_multiples`` of the remaining-TWAP slice), ``"continuous"`` (a Box in [-1, 1]
        mapped linearly to a multiple in [0, max(twap_multiples)]), ``"fraction"`` (a Box in
        [-1, 1] mapped linearly to a fraction in [0, 1] of the remaining inventory) or
        ``"fraction_grid"`` (a fraction from ``fraction_grid``); the fraction modes can express
        the front-loaded schedules that risk aversion calls for; ``"residual"`` (a Box in
        [-1, 1] mapped to a multiplier in [1/residual_range, residual_range] on a base policy's
        trade for the slice, the adaptive MPC by default: action 0 is the base; built by
        ``sb3_exec.wrappers``); ``"participation_rate"`` (a Box in [-1, 1] mapped linearly to a
        participation in [0, max_participation] of the slice's volume); ``"pace_multiple"`` and
        ``"pace_continuous"`` (a multiple, from ``twap_multiples`` or a Box mapped to [0,
        max(twap_multiples)], of ``x V_t / R_t``, the inventory's share of the expected remaining
        volume ``R_t``: they need ``pace_features``). The interfaces
        themselves are ``sb3_exec.actions.INTERFACES``
    :param residual_range: the largest multiplier (and the inverse of the smallest) that
        ``action_mode="residual"`` applies to the base policy's trade, > 1
    :param residual_base: the base policy of ``action_mode="residual"``: a causal baseline name
        (``adaptive``, ``twap``, ``vwap``, ``ac``, ``pov``, ``immediate``)
    :param pace_features: add two observation features (``dynamics.PACE_NAMES``): the volume the
        model expects over the slices left, this one included, given this slice's volume (the
        known profile and the volume's AR(1) forecast: ``market.remaining_volume``) as a share
        of the day's expected volume, and the participation the inventory left needs on it as a
        share of ``max_participation``
    :param reward: ``"shortfall"`` (minus the realized slice cost plus risk term, in bps) or
        ``"schedule"`` (minus the slice's schedule cost plus risk term): changes training only
    """

    T: int = 40
    Q0: float = 100_000.0
    p0: float = 100.0
    sigma: float = 0.02
    dt: float = 1 / 78
    kappa: float = 1e-6
    eta: float = 5e-5
    spread_bps: float = 5.0
    vol_mu: float = 2e6
    vol_sd: float = 5e5
    noise_sd: float = 0.002
    max_participation: float = 0.2
    action_levels: int = 7
    side: str = "sell"
    risk_aversion: float = 0.0
    temp_impact: str = "participation"
    volume_model: str = "normal"
    volume_phi: float = 0.0
    volume_innov_sd: float = 0.0
    volume_u_shape: float = 0.0
    spread_model: str = "constant"
    spread_phi: float = 0.0
    spread_innov_sd: float = 0.0
    aggressiveness_penalty: float = 0.0
    participation_change_penalty: float = 0.0
    signal_strength: float = 0.0
    signal_phi: float = 0.0
    dark_share: float = 0.0
    dark_log_sd: float = 1.0
    dark_adverse_bps: float = 0.0
    dark_levels: tuple[float, ...] = field(default=(0.0, 0.25, 0.5, 1.0))
    own_impact: bool = True
    shock_before_trade: bool = True
    deadline_penalty: float = 5.0
    twap_multiples: tuple[float, ...] = field(default=DEFAULT_TWAP_MULTIPLES)
    fraction_grid: tuple[float, ...] = field(default=DEFAULT_FRACTION_GRID)
    action_mode: str = "twap_multiple"
    residual_range: float = 2.0
    residual_base: str = "adaptive"
    pace_features: bool = False
    reward: str = "shortfall"
    buy: dataclasses.InitVar[bool | None] = None

    def __post_init__(self, buy: bool | None) -> None:
        if buy is not None:
            if not isinstance(buy, (bool, int)):
                raise ValueError(f"buy must be True or False, got {buy!r}")
            object.__setattr__(self, "side", "buy" if buy else "sell")
        object.__setattr__(self, "twap_multiples", tuple(float(m) for m in self.twap_multiples))
        object.__setattr__(self, "fraction_grid", tuple(float(f) for f in self.fraction_grid))
        object.__setattr__(self, "dark_levels", tuple(float(f) for f in self.dark_levels))
        _validate(self)
        object.__setattr__(self, "T", int(self.T))
        object.__setattr__(self, "action_levels", int(self.action_levels))

    @cached_property
    def sign(self) -> int:
        """+1 for a sell program, -1 for a buy: ``sign * (p0 - price)`` is the cost per share."""
        return 1 if self.side == "sell" else -1

    @cached_property
    def notional(self) -> float:
        """Arrival notional ``Q0 * p0`` in dollars; the denominator of every bps figure."""
        return self.Q0 * self.p0

    @cached_property
    def sigma_dollars(self) -> float:
        """Dollar volatility of the mid per sqrt(day)."""
        return self.p0 * self.sigma

    @cached_property
    def dark_venue(self) -> bool:
        """Whether a dark venue is on (the action then chooses a dark order too)."""
        return self.dark_share > 0

    @cached_property
    def lob_features(self) -> bool:
        """Whether the observation carries the tape/LOB features (the signal is on)."""
        return self.signal_strength > 0

    @cached_property
    def price_scale(self) -> float:
        """The observation's unit of price moves ($): the horizon's volatility
        ``p0 * sigma * sqrt(T dt)``, at least 1 bp of ``p0``."""
        return self.p0 * max(self.sigma * math.sqrt(self.T * self.dt), 1e-4)

    def replace(self, **changes: Any) -> ExecConfig:
        """A validated copy with ``changes`` applied (``buy=`` accepted)."""
        return make_config(self, **changes)


PRESETS: dict[str, dict[str, Any]] = {
    # The notebook's model and defaults exactly (docs/METHODS.md, section 1).
    "seed": {},
    # Almgren & Chriss (2000), section 4 example: S0=50, X=1e6, 5 daily slices, 30%/yr,
    # epsilon=1/16 $, eta=2.5e-6, gamma=2.5e-7, lambda=1e-6. Daily volume 5M shares, constant,
    # only used by the participation features; no cap binds.
    "ac2000": dict(
        T=5,
        Q0=1e6,
        p0=50.0,
        sigma=0.30 / math.sqrt(250.0),
        dt=1.0,
        kappa=2.5e-7,
        eta=2.5e-6,
        spread_bps=12.5,
        vol_mu=5e6,
        vol_sd=0.0,
        noise_sd=0.0,
        max_participation=1.0,
        risk_aversion=1e-6,
        temp_impact="rate",
        own_impact=False,
        shock_before_trade=False,
    ),
    # Liquidity that comes and goes (docs/METHODS.md, sections 1 and 4-6; sell 4M shares over 40
    # five-minute slices, 2M shares per slice on average with a U-shaped profile, log-AR(1) volume
    # with phi 0.8 and innovation SD 0.5, log-AR(1) half-spread around 3 bps with phi 0.85 and SD
    # 0.5, temporary impact additive and linear in participation, a 25% cap, no risk term) with
    # 1.5x its impact (eta 0.015), so that TWAP sits >= 5 bps of schedule objective above the oracle.
    "liquidity": dict(
        T=40,
        Q0=4e6,
        p0=100.0,
        sigma=0.02,
        dt=1 / 78,
        kappa=0.0,
        eta=0.015,
        spread_bps=3.0,
        vol_mu=2e6,
        vol_sd=0.0,
        noise_sd=0.0,
        max_participation=0.25,
        temp_impact="linear",
        own_impact=False,
        shock_before_trade=False,
        volume_model="log_ar1",
        volume_phi=0.8,
        volume_innov_sd=0.5,
        volume_u_shape=1.0,
        spread_model="log_ar1",
        spread_phi=0.85,
        spread_innov_sd=0.5,
    ),
}
# The Almgren-Chriss model over 60 daily slices at 12%/yr with the paper's other parameters
# (the Udacity deep-RL finance environment, also in FinRL-Meta): AC E=$477,713, SD=$476,456;
# TWAP E=$227,083, SD=$1,675,828. The optimum sells a near-constant 22% of what remains.
PRESETS["ac60"] = dict(PRESETS["ac2000"], T=60, sigma=0.12 / math.sqrt(250.0))
# Everything on: the liquidity preset plus an observed order-flow signal that predicts the
# slice's move with 0.1 of a slice's volatility (AR(1), phi 0.7) and the tape/LOB features, a
# dark venue (hidden liquidity 10% of the slice's volume on average, lognormal SD 1, 1 bp of
# adverse selection per dark share), and a small aggressiveness penalty (2 bps x participation^2).
PRESETS["lob"] = dict(
    PRESETS["liquidity"],
    signal_strength=0.1,
    signal_phi=0.7,
    dark_share=0.1,
    dark_log_sd=1.0,
    dark_adverse_bps=1.0,
    aggressiveness_penalty=2.0,
)


def make_config(preset: str | ExecConfig = "seed", **overrides: Any) -> ExecConfig:
    """Build a validated config from a preset name (or a config) and keyword overrides.

    :param preset: a name in ``PRESETS`` or an ``ExecConfig`` to start from
    :param overrides: any ``ExecConfig`` field, plus ``buy`` (the notebook's flag)
    :raises ValueError: unknown preset or field, or an invalid value (the message names the field)
    """
    if isinstance(preset, ExecConfig):
        base = {f.name: getattr(preset, f.name) for f in dataclasses.fields(ExecConfig)}
    elif isinstance(preset, str) and preset in PRESETS:
        base = dict(PRESETS[preset])
    else:
        raise ValueError(f"preset: unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(ExecConfig)} | {"buy"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"{unknown[0]}: not an ExecConfig field; fields are {sorted(known)}")
    if "buy" in overrides and "side" in overrides:
        raise ValueError("buy: give either side= or buy=, not both")
    base.update(overrides)
    if "buy" in overrides:
        base.pop("side", None)
    return ExecConfig(**base)


def _check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    low_open: bool = False,
    high: float | None = None,
    integer: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")


def _validate(cfg: ExecConfig) -> None:
    _check_number("T", cfg.T, low=1, integer=True)
    _check_number("Q0", cfg.Q0, low=0, low_open=True)
    _check_number("p0", cfg.p0, low=0, low_open=True)
    _check_number("sigma", cfg.sigma, low=0)
    _check_number("dt", cfg.dt, low=0, low_open=True)
    _check_number("kappa", cfg.kappa, low=0)
    _check_number("eta", cfg.eta, low=0)
    _check_number("spread_bps", cfg.spread_bps, low=0)
    _check_number("vol_mu", cfg.vol_mu, low=0, low_open=True)
    _check_number("vol_sd", cfg.vol_sd, low=0)
    _check_number("noise_sd", cfg.noise_sd, low=0)
    _check_number("max_participation", cfg.max_participation, low=0, low_open=True, high=1)
    _check_number("action_levels", cfg.action_levels, low=2, integer=True)
    _check_number("risk_aversion", cfg.risk_aversion, low=0)
    _check_number("deadline_penalty", cfg.deadline_penalty, low=0)
    if cfg.side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {cfg.side!r}")
    if cfg.action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {cfg.action_mode!r}")
    if cfg.action_mode in PACE_MODES and cfg.pace_features is not True:
        raise ValueError(
            f"pace_features must be True for action_mode={cfg.action_mode!r} (it trades a "
            f"share of the expected remaining volume), got {cfg.pace_features!r}"
        )
    _check_number("residual_range", cfg.residual_range, low=1, low_open=True)
    if not isinstance(cfg.residual_base, str) or not cfg.residual_base:
        raise ValueError(f"residual_base must be a baseline name, got {cfg.residual_base!r}")
    if cfg.reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {cfg.reward!r}")
    if cfg.volume_model not in VOLUME_MODELS:
        raise ValueError(f"volume_model must be one of {VOLUME_MODELS}, got {cfg.volume_model!r}")
    if cfg.spread_model not in SPREAD_MODELS:
        raise ValueError(f"spread_model must be one of {SPREAD_MODELS}, got {cfg.spread_model!r}")
    for name in ("volume_phi", "spread_phi", "signal_phi"):
        _check_number(name, getattr(cfg, name), low=0)
        if getattr(cfg, name) >= 1:
            raise ValueError(f"{name} must be < 1 (a stationary AR(1)), got {getattr(cfg, name)!r}")
    for name in (
        "volume_innov_sd",
        "spread_innov_sd",
        "volume_u_shape",
        "aggressiveness_penalty",
        "participation_change_penalty",
        "signal_strength",
        "dark_share",
        "dark_log_sd",
        "dark_adverse_bps",
    ):
        _check_number(name, getattr(cfg, name), low=0)
    if cfg.temp_impact not in TEMP_IMPACTS:
        raise ValueError(f"temp_impact must be one of {TEMP_IMPACTS}, got {cfg.temp_impact!r}")
    for name in ("own_impact", "shock_before_trade", "pace_features"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name} must be True or False, got {getattr(cfg, name)!r}")
    grid = cfg.twap_multiples
    for m in grid:
        _check_number("twap_multiples", m, low=0)
    if len(grid) < 2 or list(grid) != sorted(set(grid)) or 0.0 not in grid or 1.0 not in grid:
        raise ValueError(f"twap_multiples must be strictly increasing, contain 0 and 1, got {grid!r}")
    dl = cfg.dark_levels
    for f in dl:
        _check_number("dark_levels", f, low=0, high=1)
    if len(dl) < 2 or list(dl) != sorted(set(dl)) or dl[0] != 0.0:
        raise ValueError(f"dark_levels must be strictly increasing from 0, within [0, 1], got {dl!r}")
    fr = cfg.fraction_grid
    for f in fr:
        _check_number("fraction_grid", f, low=0, high=1)
    if len(fr) < 2 or list(fr) != sorted(set(fr)) or fr[0] != 0.0 or fr[-1] != 1.0:
        raise ValueError(f"fraction_grid must be strictly increasing from 0 to 1, got {fr!r}")
