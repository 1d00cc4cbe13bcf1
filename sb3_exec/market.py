"""Exogenous market paths of a batch of episodes, drawn from their seeds.

Everything an episode's market does that the order does not cause: the price innovations (and the
order-flow signal's predictable drift), market volumes (the notebook's normal draws or a U-shaped
log-AR(1)), half-spreads, microstructure noise, tape/LOB features and the dark venue's hidden
liquidity. Each stream is a pure function of the episode seed (``sb3_exec.rng``), so every policy
sees the same market (common random numbers) and the batched env reproduces the single env.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from sb3_exec.config import ExecConfig
from sb3_exec.rng import normals

STREAM_PRICE, STREAM_VOLUME, STREAM_NOISE, STREAM_SPREAD, STREAM_SIGNAL, STREAM_DEPTH, STREAM_DARK = range(7)
MIN_VOLUME = 1e3  # shares; the notebook's floor on a slice's market volume


@dataclass
class Market:
    """Exogenous paths of a batch of episodes, drawn from their seeds: ``(B, T)`` arrays.

    None of it depends on the actions taken (common random numbers across policies).
    """

    seeds: np.ndarray  # (B,) uint64 episode seeds
    volume: np.ndarray  # market volume of slice t (shares)
    half_spread: np.ndarray  # half-spread of slice t ($/share)
    mid: np.ndarray  # exogenous mid at which slice t trades, before impact and noise ($/share)
    mid_known: np.ndarray  # exogenous mid known when slice t is decided ($/share)
    mid_sched: np.ndarray  # predictable part of `mid`: what the schedule cost prices at ($/share)
    noise: np.ndarray  # microstructure noise on slice t's execution mid ($/share)
    signal: np.ndarray  # order-flow signal observed at slice t (0 when off)
    imbalance: np.ndarray  # depth imbalance at slice t, in [-1, 1] (0 when off)
    dark: np.ndarray  # hidden liquidity of the dark venue at slice t (shares; 0 when off)
    remaining: np.ndarray  # expected volume of slices t..T-1 given slice t's (``remaining_volume``)

    def __len__(self) -> int:
        return len(self.seeds)

    @cached_property
    def row_offsets(self) -> np.ndarray:
        """Flat index of each episode's slice 0 in the raveled ``(B, T)`` arrays."""
        B, T = self.volume.shape
        return np.arange(0, B * T, T)

    def take(self, rows: np.ndarray) -> Market:
        """A new ``Market`` of episodes ``rows`` (copies)."""
        return Market(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def put(self, rows: np.ndarray, other: Market) -> None:
        """Overwrite episodes ``rows`` with ``other``'s (used when a batched env resets some)."""
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


def draw_market(cfg: ExecConfig, seeds: np.ndarray) -> Market:
    """Draw the exogenous paths of one episode per seed (``seeds`` as from ``rng.as_seeds``)."""
    B, T = len(seeds), cfg.T

    def draws(stream: int, scale: float) -> np.ndarray:
        # a zero scale needs no draws (the streams are independent, so skipping one changes
        # nothing in the others)
        return scale * normals(seeds, stream, T) if scale > 0 else np.zeros((B, T))

    slice_vol = cfg.p0 * cfg.sigma * np.sqrt(cfg.dt)
    shocks = draws(STREAM_PRICE, slice_vol)
    signal = np.zeros((B, T))
    imbalance = np.zeros((B, T))
    if cfg.signal_strength > 0:
        signal = log_ar1(draws(STREAM_SIGNAL, 1.0), cfg.signal_phi, np.sqrt(1 - cfg.signal_phi**2))
        imbalance = np.tanh(0.5 * signal + 0.5 * draws(STREAM_DEPTH, 1.0))  # a noisy proxy
    drift = (cfg.signal_strength * slice_vol) * signal  # the predictable part of each move
    shocks = shocks + drift
    through = np.cumsum(shocks, axis=1)  # innovations of slices 0..t
    before = through - shocks  # innovations of slices 0..t-1
    drift_through = np.cumsum(drift, axis=1)
    drift_before = drift_through - drift
    mean_volume = cfg.vol_mu * volume_profile(cfg)
    if cfg.volume_model == "log_ar1":
        z = log_ar1(draws(STREAM_VOLUME, 1.0), cfg.volume_phi, cfg.volume_innov_sd)
        volume = mean_volume * np.exp(z - 0.5 * stationary_var(cfg.volume_phi, cfg.volume_innov_sd))
    else:
        volume = mean_volume + draws(STREAM_VOLUME, cfg.vol_sd)
    volume = np.maximum(volume, MIN_VOLUME)
    half_spread = np.full((B, T), cfg.spread_bps * 1e-4 * cfg.p0)
    if cfg.spread_model == "log_ar1":
        y = log_ar1(draws(STREAM_SPREAD, 1.0), cfg.spread_phi, cfg.spread_innov_sd)
        half_spread *= np.exp(y - 0.5 * stationary_var(cfg.spread_phi, cfg.spread_innov_sd))
    noise = draws(STREAM_NOISE, cfg.noise_sd)
    dark = np.zeros((B, T))
    if cfg.dark_venue:
        sd = cfg.dark_log_sd
        dark = cfg.dark_share * volume * np.exp(draws(STREAM_DARK, sd) - 0.5 * sd**2)
    return Market(
        seeds=np.asarray(seeds, dtype=np.uint64),
        volume=volume,
        half_spread=half_spread,
        mid=cfg.p0 + (through if cfg.shock_before_trade else before),
        mid_known=cfg.p0 + before,
        mid_sched=cfg.p0 + (drift_through if cfg.shock_before_trade else drift_before),
        noise=noise,
        signal=signal,
        imbalance=imbalance,
        dark=dark,
        remaining=remaining_volume(cfg, volume),
    )


def remaining_volume(cfg: ExecConfig, volume: np.ndarray) -> np.ndarray:
    """The volume the model expects over slices ``t..T-1`` once slice ``t``'s volume is seen,
    ``(B, T)``: ``V_t`` plus ``E[V_k | V_t]`` for ``k > t`` (the known profile and, for the
    log-AR(1) volume, its conditional mean ``exp(phi^(k-t) z_t + s2 (1 - phi^(2(k-t))) / 2)``
    on the profile; the 1,000-share floor, 8+ SD away, is ignored). A forecast from the observed
    history: what a from-scratch agent may know (``pace_features``)."""
    T = cfg.T
    mean_v = cfg.vol_mu * volume_profile(cfg)
    if cfg.volume_model != "log_ar1":
        later = np.concatenate([np.cumsum(mean_v[::-1])[::-1][1:], [0.0]])  # sum over k > t
        return volume + later
    out = np.array(volume, dtype=np.float64)
    s2 = stationary_var(cfg.volume_phi, cfg.volume_innov_sd)
    z = np.log(np.maximum(volume, MIN_VOLUME) / mean_v) + 0.5 * s2
    for lag in range(1, T):
        pk = cfg.volume_phi**lag
        out[:, : T - lag] += mean_v[lag:] * np.exp(pk * z[:, : T - lag] - 0.5 * s2 * pk * pk)
    return out


def volume_profile(cfg: ExecConfig) -> np.ndarray:
    """The expected intraday volume profile of a config, ``(T,)``, averaging 1."""
    return u_shape(cfg.volume_u_shape, cfg.T)


def u_shape(u: float, T: int) -> np.ndarray:
    """The U-shaped profile ``∝ 1 + u (2 t/(T-1) - 1)^2`` over ``T`` slices, averaging 1 (flat
    when ``u = 0``): the model's expected volume profile, and what ``calibrate`` fits."""
    s = np.linspace(-1.0, 1.0, T) if T > 1 else np.zeros(1)
    shape = 1.0 + u * s**2
    return shape / shape.mean()


def stationary_var(phi: float, innov_sd: float) -> float:
    """Stationary variance of an AR(1) with coefficient ``phi`` and innovation SD ``innov_sd``."""
    return innov_sd**2 / (1.0 - phi**2)


def log_ar1(eps: np.ndarray, phi: float, innov_sd: float) -> np.ndarray:
    """A stationary AR(1) path per row from standard normal draws ``eps`` (``(B, T)``)."""
    z = np.empty_like(eps)
    z[:, 0] = np.sqrt(stationary_var(phi, innov_sd)) * eps[:, 0]
    for t in range(1, eps.shape[1]):
        z[:, t] = phi * z[:, t - 1] + innov_sd * eps[:, t]
    return z
