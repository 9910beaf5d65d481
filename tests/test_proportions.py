"""The Wilson score interval against published values, and its behaviour at the edges."""

from __future__ import annotations

import math

import pytest

from traitlens.evaluation.proportions import wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (8, 13, 0.3552, 0.8229),  # the demo's detectors before this check: 8 of 13 correct
        (5, 10, 0.2366, 0.7634),  # Newcombe (1998), Table I
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998): 81/263
    ],
)
def test_known_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_the_interval_narrows_with_n_and_widens_with_confidence():
    small, large = wilson_interval(8, 13), wilson_interval(80, 130)
    assert large[1] - large[0] < small[1] - small[0]
    assert small[0] < 8 / 13 < small[1] and large[0] < 0.6154 < large[1]
    loose = wilson_interval(8, 13, confidence=0.99)
    assert loose[0] < small[0] and loose[1] > small[1]


def test_nothing_observed_and_bad_counts():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
    with pytest.raises(ValueError):
        wilson_interval(1, 3, confidence=1.0)
