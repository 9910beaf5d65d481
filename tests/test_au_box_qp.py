"""The batched box-constrained QP solver against scipy's exact bounded least squares."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from traitlens.aus.box_qp import solve_box_qp


def _reference(h, g, lo, hi):
    chol = np.linalg.cholesky(h)
    return np.array(
        [
            lsq_linear(chol.T, np.linalg.solve(chol, gi), bounds=(lo, hi), method="bvls").x
            for gi in g
        ]
    )


def _problem(rng, k=12, n=200, cond=1e3):
    q, _ = np.linalg.qr(rng.normal(size=(k, k)))
    h = q @ np.diag(np.geomspace(1.0, cond, k)) @ q.T
    g = rng.normal(scale=cond / 3, size=(n, k))
    return h, g


@pytest.mark.parametrize("cond", [10.0, 1e4])
def test_matches_bvls_with_some_free_variables(cond):
    rng = np.random.default_rng(1)
    h, g = _problem(rng, cond=cond)
    lo = np.r_[np.zeros(10), -np.inf, -np.inf]
    hi = np.r_[np.ones(10), np.inf, np.inf]
    a = solve_box_qp(h, g, lo, hi)
    assert np.allclose(a, _reference(h, g, lo, hi), atol=1e-6)
    assert (a[:, :10] >= 0).all() and (a[:, :10] <= 1).all()


def test_interior_solution_is_the_linear_solve():
    rng = np.random.default_rng(2)
    h, _ = _problem(rng, k=5, cond=5.0)
    a_true = rng.uniform(0.2, 0.8, (7, 5))
    a = solve_box_qp(h, a_true @ h, np.zeros(5), np.ones(5))
    assert np.allclose(a, a_true)


def test_empty_batch():
    assert solve_box_qp(np.eye(3), np.zeros((0, 3)), np.zeros(3), np.ones(3)).shape == (0, 3)
