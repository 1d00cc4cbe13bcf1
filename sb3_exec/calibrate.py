"""Fit a preset's liquidity and volatility from a user's intraday bars.

    from sb3_exec.calibrate import calibrate
    overrides = calibrate("bars.csv")           # or a DataFrame
    env = gymnasium.make("sb3_exec/Execution-v0", preset="liquidity", **overrides)

Input: one row per bar with columns ``time`` (parseable timestamps), ``price`` (> 0), ``volume``
(shares, > 0) and either ``spread`` (quoted spread in $, > 0) or ``bid`` and ``ask``. Every day
must have the same number of bars; that number becomes ``T`` and ``dt = 1 / T`` (one trading day
per episode). What is fitted, in the model's terms (``sb3_exec.config``):

- ``vol_mu``: mean volume per bar; ``volume_u_shape``: the U-shape curvature of the mean intraday
  profile (least squares); ``volume_phi`` and ``volume_innov_sd``: the AR(1) of log volume around
  the profile, pooled over days;
- ``spread_bps``: mean half-spread in bps of the price; ``spread_phi``, ``spread_innov_sd``: the
  AR(1) of the log half-spread;
- ``sigma``: the volatility as a fraction of the price per unit of ``dt``, from bar-to-bar log
  returns within days. A day of bars is taken as one episode and ``dt = 1 / T``; only the
  per-bar volatility ``sigma * sqrt(dt)`` enters the liquidity presets' dynamics, and it is
  recovered whatever the bars' clock time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from sb3_exec.config import make_config
from sb3_exec.market import draw_market, u_shape
from sb3_exec.rng import as_seeds


def _fail(problem: str) -> None:
    raise ValueError(f"bars: {problem}")


def load_bars(bars: pd.DataFrame | str | Path) -> pd.DataFrame:
    """Validate bars into a frame with ``time``, ``day``, ``slot``, ``price``, ``volume``,
    ``half_spread_bps``; raises ``ValueError`` naming the problem."""
    df = pd.read_csv(bars) if isinstance(bars, (str, Path)) else bars.copy()
    missing = [c for c in ("time", "price", "volume") if c not in df.columns]
    if missing:
        _fail(f"missing column(s) {missing}; need time, price, volume and spread (or bid and ask)")
    if "spread" not in df.columns:
        if not {"bid", "ask"} <= set(df.columns):
            _fail("missing column 'spread' (or both 'bid' and 'ask')")
        df["spread"] = df["ask"] - df["bid"]
    if len(df) < 4:
        _fail(f"need at least 4 bars, got {len(df)}")
    for col in ("price", "volume", "spread"):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any():
            _fail(f"column '{col}' has {int(values.isna().sum())} NaN or non-numeric value(s)")
        if (values <= 0).any():
            _fail(f"column '{col}' has {int((values <= 0).sum())} non-positive value(s)")
        df[col] = values.astype(float)
    try:
        df["time"] = pd.to_datetime(df["time"])
    except (ValueError, TypeError) as exc:
        _fail(f"column 'time' is not parseable as timestamps ({exc})")
    if df["time"].isna().any():
        _fail("column 'time' has NaN values")
    if df["time"].duplicated().any():
        _fail(f"duplicate times, e.g. {df.loc[df['time'].duplicated(), 'time'].iloc[0]}")
    if not df["time"].is_monotonic_increasing:
        _fail("times are not sorted in increasing order")
    df["day"] = df["time"].dt.normalize()
    df["slot"] = df.groupby("day").cumcount()
    per_day = df.groupby("day").size()
    if per_day.nunique() != 1:
        _fail(
            f"days have different numbers of bars ({sorted(per_day.unique().tolist())}); keep whole days of equal bars"
        )
    df["half_spread_bps"] = df["spread"] / 2 / df["price"] * 1e4
    return df


def _ar1(z: pd.DataFrame) -> tuple[float, float]:
    """Pooled AR(1) coefficient and innovation SD of the columns' rows (one row per day)."""
    now, nxt = z.iloc[:, :-1].to_numpy().ravel(), z.iloc[:, 1:].to_numpy().ravel()
    phi = float(np.clip(np.dot(now, nxt) / np.dot(now, now), 0.0, 0.999))
    return phi, float(np.std(nxt - phi * now))


def calibrate(bars: pd.DataFrame | str | Path) -> dict[str, Any]:
    """Config overrides fitted from intraday bars (see the module doc)."""
    df = load_bars(bars)
    T = int(df["slot"].max()) + 1
    if T < 3:
        _fail(f"need at least 3 bars per day to fit a profile, got {T}")
    vol = df.pivot(index="day", columns="slot", values="volume")
    vol_mu = float(vol.to_numpy().mean())
    profile = vol.mean(axis=0).to_numpy() / vol_mu

    def misfit(u: float) -> float:
        return float(np.sum((profile - u_shape(u, T)) ** 2))

    u = float(optimize.minimize_scalar(misfit, bounds=(0.0, 50.0), method="bounded").x)
    shape = u_shape(u, T)
    volume_phi, volume_innov_sd = _ar1(
        np.log(vol / (vol_mu * shape)).sub(np.log(vol / (vol_mu * shape)).mean(axis=0), axis=1)
    )
    hs = df.pivot(index="day", columns="slot", values="half_spread_bps")
    log_hs = np.log(hs)
    spread_phi, spread_innov_sd = _ar1(log_hs - log_hs.to_numpy().mean())
    price = df.pivot(index="day", columns="slot", values="price")
    returns = np.diff(np.log(price.to_numpy()), axis=1)
    return {
        "T": T,
        "dt": 1.0 / T,
        "p0": float(df["price"].iloc[0]),
        "sigma": float(returns.std() * np.sqrt(T)),
        "vol_mu": vol_mu,
        "volume_model": "log_ar1",
        "volume_u_shape": u,
        "volume_phi": volume_phi,
        "volume_innov_sd": volume_innov_sd,
        "spread_model": "log_ar1",
        "spread_bps": float(hs.to_numpy().mean()),
        "spread_phi": spread_phi,
        "spread_innov_sd": spread_innov_sd,
    }


def simulate_bars(
    preset: str = "liquidity", days: int = 20, seed: int = 0, start: str = "2026-01-05 09:30", **overrides: Any
) -> pd.DataFrame:
    """Intraday bars generated by the model itself (one episode per day, no trading): the
    sample data and the round-trip test of ``calibrate``."""
    cfg = make_config(preset, **overrides)
    market = draw_market(cfg, as_seeds(np.arange(seed, seed + days)))
    bar = pd.Timedelta(hours=6.5) * cfg.dt  # dt is a fraction of a 6.5-hour trading day
    if cfg.T * cfg.dt > 1.0:
        raise ValueError(f"preset: {preset!r} spans more than a trading day; bars need an intraday preset")
    frames = []
    for d in range(days):
        times = pd.Timestamp(start) + pd.Timedelta(days=d) + bar * np.arange(cfg.T)
        frames.append(
            pd.DataFrame(
                {
                    "time": times,
                    "price": market.mid[d] + market.noise[d],
                    "volume": market.volume[d],
                    "spread": 2 * market.half_spread[d],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
