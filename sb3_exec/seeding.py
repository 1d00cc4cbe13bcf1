"""Disjoint seed ranges for training, validation and evaluation episodes.

- Training episodes: an env reset without a seed draws its episode seed from the env's own RNG in
  ``[2**62, 2**63)``; SB3's ``env.seed(s)`` seeds episodes ``s, s+1, ...`` (small integers).
- Validation seeds lie in ``[2**40, 2**61)``, evaluation seeds in ``[2**61, 2**62)``: no seed can
  be shared between the three, whatever the master seed.
"""

from __future__ import annotations

import numpy as np

TRAIN_LOW, TRAIN_HIGH = 2**62, 2**63
VALIDATION_LOW, VALIDATION_HIGH = 2**40, 2**61
EVALUATION_LOW, EVALUATION_HIGH = 2**61, 2**62


def _draw(master: int, purpose: int, n: int, low: int, high: int) -> list[int]:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(master), purpose]))
    seeds: list[int] = []
    seen: set[int] = set()
    while len(seeds) < n:  # collisions are astronomically rare, but keep the seeds distinct
        for s in rng.integers(low, high, size=n - len(seeds), dtype=np.int64).tolist():
            if s not in seen:
                seen.add(s)
                seeds.append(s)
    return seeds


def validation_seeds(n: int, master: int = 0) -> list[int]:
    """``n`` distinct validation episode seeds derived from ``master``."""
    return _draw(master, 1, n, VALIDATION_LOW, VALIDATION_HIGH)


def evaluation_seeds(n: int, master: int = 0) -> list[int]:
    """``n`` distinct evaluation episode seeds derived from ``master``."""
    return _draw(master, 2, n, EVALUATION_LOW, EVALUATION_HIGH)


def training_seeds(n: int, master: int = 0) -> list[int]:
    """``n`` distinct training-run seeds (for SB3's ``seed=``) derived from ``master``."""
    return _draw(master, 3, n, 0, 2**31 - 1)
