"""AU-detector emergence: the log-space hypergeometric p against scipy, and the best unit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import hypergeom

from traitlens.au_emergence import (
    emergence,
    log_corrected_p,
    log_tail,
    null_false_positive_rate,
    top_n_mask,
)


@pytest.mark.parametrize(
    ("k", "f", "n"),
    [(0, 50, 5), (1, 50, 5), (3, 50, 5), (5, 50, 5), (2, 1000, 20), (10, 1000, 20),
     (20, 1000, 20), (30, 100_000, 500), (60, 100_000, 500), (8, 20, 10)],
)  # fmt: skip
def test_log_tail_matches_scipy(k, f, n):
    expected = hypergeom(f, n, n).logsf(k - 1)
    assert log_tail(k, f, n) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_log_tail_does_not_underflow_where_the_plain_formula_does():
    f, n, k = 100_000, 500, 400  # a near-perfect overlap: the tail is ~1e-916
    assert hypergeom(f, n, n).sf(k - 1) == 0.0  # the plain value underflows
    value = log_tail(k, f, n)
    assert math.isfinite(value) and value / math.log(10) < -900  # below any float64
    assert value == pytest.approx(hypergeom(f, n, n).logsf(k - 1), rel=1e-9)


def test_corrected_p_is_the_papers_formula():
    for tail in (1e-12, 1e-6, 1e-3, 0.05, 0.4):
        for u in (1, 64, 512):
            expected = 1 - (1 - tail) ** u
            assert math.exp(log_corrected_p(math.log(tail), u)) == pytest.approx(expected, rel=1e-9)
    # tiny tails: p = U * tail to first order, kept in log space
    assert log_corrected_p(-3000.0, 512) == pytest.approx(math.log(512) - 3000.0)


def test_top_n_mask_per_column_and_ties():
    values = np.array([[1, 5], [3, 5], [2, 1], [3, 0]], dtype=float)
    mask = top_n_mask(values, 2)
    assert mask[:, 0].tolist() == [False, True, False, True]
    assert mask[:, 1].tolist() == [True, True, False, False]
    assert top_n_mask(np.array([2.0, 2.0, 2.0]), 1).tolist() == [True, False, False]


def test_a_unit_that_follows_the_au_is_found_and_significant():
    rng = np.random.default_rng(0)
    f, u, n = 2000, 64, 50
    au = rng.gamma(2.0, 1.0, f)
    units = rng.normal(size=(f, u))
    units[:, 17] = au + rng.normal(0, 0.2, f)  # a unit tuned to the AU
    result = emergence(au, units, n)
    assert result.unit == 17 and result.i_max > 35
    assert result.p < 1e-30 and (result.n, result.f, result.u) == (n, f, u)
    overlap = int((top_n_mask(au, n) & top_n_mask(units[:, 17], n)).sum())
    assert result.i_max == overlap


def test_unrelated_units_are_not_significant_and_the_null_keeps_its_rate():
    rng = np.random.default_rng(1)
    f, u, n = 1000, 32, 50
    au, units = rng.random(f), rng.random((f, u))
    assert emergence(au, units, n).p > 0.01
    rate = null_false_positive_rate(au, units, n, alpha=0.05, n_perm=100, seed=0)
    assert rate <= 0.10  # analytic p is conservative-to-exact under the null
