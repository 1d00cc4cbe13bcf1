"""Counter-based normals: distribution, independence, determinism, seed validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sb3_exec.rng import as_seeds, normals


def test_standard_normal():
    z = normals(as_seeds(np.arange(2000)), 0, 50).ravel()
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.std() - 1) < 0.01
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_streams_seeds_and_slices_are_uncorrelated():
    seeds = as_seeds(np.arange(20_000))
    a, b = normals(seeds, 0, 3), normals(seeds, 1, 3)
    bound = 4 / np.sqrt(len(seeds))
    assert abs(np.corrcoef(a[:, 0], b[:, 0])[0, 1]) < bound  # across streams
    assert abs(np.corrcoef(a[:, 0], a[:, 1])[0, 1]) < bound  # across slices
    assert abs(np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]) < bound  # adjacent seeds


def test_deterministic_and_prefix_stable():
    s = as_seeds([7, 2**63 + 5])
    np.testing.assert_array_equal(normals(s, 2, 10), normals(s, 2, 10))
    np.testing.assert_array_equal(normals(s, 2, 10)[:, :4], normals(s, 2, 4))
    assert not np.array_equal(normals(s, 0, 10), normals(s, 1, 10))


@pytest.mark.parametrize("bad", [[-1], [2**64], [1.5], [], "abc"])
def test_bad_seeds(bad):
    with pytest.raises(ValueError, match="seeds"):
        as_seeds(bad)
