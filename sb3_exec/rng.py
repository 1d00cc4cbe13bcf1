"""Counter-based random numbers: an episode's exogenous draws are a pure function of its seed.

``normals(seeds, stream, n)`` returns, for every episode seed, ``n`` standard normal draws of one
named stream (price shocks, volumes, noise, ...). Draw ``k`` of stream ``s`` of episode ``seed`` is
``Phi^-1(u)`` with ``u`` from the SplitMix64 sequence (Steele, Lea & Flood 2014; it passes
BigCrush) keyed by ``(seed, stream)`` at counter ``k``. Compared with one ``numpy.random.Generator``
per episode this gives the same guarantees that matter here (explicit seeds, reproducibility,
independence of streams and of draws from the actions taken) and is vectorised over episodes,
so resetting thousands of episodes of a batched env costs one numpy call instead of thousands of
generator constructions.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
MAX_SEED = 2**64 - 1


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def as_seeds(seeds: object) -> np.ndarray:
    """Validate episode seeds (non-negative integers below 2**64) into a uint64 array."""
    if isinstance(seeds, np.ndarray) and seeds.dtype.kind in "iu":
        if seeds.ndim != 1 or seeds.size == 0:
            raise ValueError(f"seeds must be a non-empty 1-d array, got shape {seeds.shape}")
        if seeds.dtype.kind == "i" and seeds.min() < 0:
            raise ValueError(f"seeds must be >= 0, got {seeds.min()}")
        return seeds.astype(np.uint64)
    items = [seeds] if isinstance(seeds, (int, np.integer)) else list(seeds)  # type: ignore[call-overload]
    if not items:
        raise ValueError("seeds must be a non-empty list of integers")
    for s in items:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise ValueError(f"seeds must be integers, got {s!r}")
        if not 0 <= int(s) <= MAX_SEED:
            raise ValueError(f"seeds must lie in [0, 2**64), got {s}")
    return np.array([int(s) for s in items], dtype=np.uint64)


def next_episode_seeds(previous: np.ndarray) -> np.ndarray:
    """The seeds of the episodes that follow ``previous`` in an env reset without a seed.

    A SplitMix64 step into ``[2**62, 2**63)`` (the training range of ``sb3_exec.seeding``), so a
    seeded first episode fixes every later one, in the single env and the batched env alike.
    """
    with np.errstate(over="ignore"):
        return (_mix(previous.astype(np.uint64) + _GOLDEN) >> np.uint64(2)) + np.uint64(2**62)


def uniforms(seeds: np.ndarray, stream: int, n: int) -> np.ndarray:
    """``(len(seeds), n)`` uniforms in the open interval (0, 1) for one stream."""
    with np.errstate(over="ignore"):
        key = _mix(seeds.astype(np.uint64) * _GOLDEN + np.uint64(stream + 1) * _M2)
        counter = (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :]
        bits = _mix(key[:, None] + counter)
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def normals(seeds: np.ndarray, stream: int, n: int) -> np.ndarray:
    """``(len(seeds), n)`` standard normal draws for one stream (inverse-CDF of ``uniforms``)."""
    return ndtri(uniforms(seeds, stream, n))


_MASK = 2**64 - 1


def _mix_int(z: int) -> int:
    """``_mix`` on one Python int (the same wrapping arithmetic, masked to 64 bits)."""
    z = ((z ^ (z >> 30)) * int(_M1)) & _MASK
    z = ((z ^ (z >> 27)) * int(_M2)) & _MASK
    return z ^ (z >> 31)


def episode_chain(previous: int, n: int) -> np.ndarray:
    """The seeds of the ``n`` episodes that follow episode ``previous`` (``next_episode_seeds``
    applied ``n`` times, on Python ints: a sequential chain), as a uint64 array."""
    out, seed = [], int(previous)
    for _ in range(n):
        seed = (_mix_int((seed + int(_GOLDEN)) & _MASK) >> 2) + 2**62
        out.append(seed)
    return np.array(out, dtype=np.uint64)
