"""Shared test helpers."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def assert_same_store():
    """``check(a, b, steps)``: two NoiseStores hold the same rows bitwise (steps, noise, every
    scalar; NaN equal to NaN), with the given steps."""
    from sgn_memory.store import NoiseStore

    def check(path_a, path_b, steps):
        a, b = NoiseStore.open(path_a), NoiseStore.open(path_b)
        np.testing.assert_array_equal(a.steps, steps)
        np.testing.assert_array_equal(b.steps, a.steps)
        np.testing.assert_array_equal(b.read_noise(), a.read_noise())
        assert b.scalar_names == a.scalar_names
        for name in a.scalar_names:
            np.testing.assert_array_equal(b.scalar(name), a.scalar(name), err_msg=name)
        return a, b

    return check
