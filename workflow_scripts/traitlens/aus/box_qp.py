"""Batched box-constrained quadratic programs: min 1/2 a'Ha - g'a  s.t.  lo <= a <= hi.

One small positive definite H (k x k, k ~ 20) shared by many right-hand sides g (one
per frame). Solved exactly by a primal-dual active-set method (Hintermueller, Ito &
Kunisch 2003) run on all rows at once: each iteration guesses which variables sit on a
bound, solves the reduced k x k system per row (one batched ``np.linalg.solve``) and
stops when no row's guess changes. On the AU problems here it converges in <= 8
iterations; a row that has not (the method can cycle on ill-conditioned H) is finished
by scipy's exact BVLS solver, so every returned row satisfies the KKT conditions.

The variables are first scaled to unit diagonal (Jacobi): the AU columns and the free
nuisance columns differ by orders of magnitude in norm.
"""

from __future__ import annotations

import numpy as np

KKT_TOL = 1e-7


def _kkt_ok(h: np.ndarray, g: np.ndarray, a: np.ndarray, lo, hi) -> np.ndarray:
    """Rows of ``a`` that are feasible and stationary (relative tolerance)."""
    grad = a @ h - g
    scale = KKT_TOL * (1.0 + np.abs(g).max(axis=1, keepdims=True))
    at_lo = a <= lo + 1e-12
    at_hi = a >= hi - 1e-12
    feasible = ((a >= lo - 1e-9) & (a <= hi + 1e-9)).all(axis=1)
    free_ok = np.where(at_lo | at_hi, 0.0, np.abs(grad)) <= scale
    lo_ok = np.where(at_lo & ~at_hi, grad, 0.0) >= -scale
    hi_ok = np.where(at_hi & ~at_lo, grad, 0.0) <= scale
    return feasible & (free_ok & lo_ok & hi_ok).all(axis=1)


def _active_set(h, g, lo, hi, a, max_iter: int) -> np.ndarray:
    """Primal-dual active-set iterations; a row leaves the loop once its guess of which
    variables sit on a bound repeats (then its KKT conditions hold)."""
    a = a.copy()
    k = a.shape[1]
    eye = np.eye(k)
    mu = a @ h - g  # the bound multipliers' first guess: the gradient
    todo = np.arange(len(a))
    prev = np.full((len(a), k), 2, dtype=np.int8)  # no row has this guess
    for _ in range(max_iter):
        at, m_, g_ = a[todo], mu[todo], g[todo]
        on_lo = m_ + (lo - at) > 0
        on_hi = (m_ + (hi - at) < 0) & ~on_lo
        sets = on_lo.astype(np.int8) - on_hi.astype(np.int8)
        moved = (sets != prev[todo]).any(axis=1)
        todo, on_lo, on_hi, g_ = todo[moved], on_lo[moved], on_hi[moved], g_[moved]
        if len(todo) == 0:
            break
        prev[todo] = sets[moved]
        fixed = on_lo | on_hi
        free = ~fixed
        value = np.where(on_lo, lo, np.where(on_hi, hi, 0.0))
        # reduced system per row: H on the free block, identity rows for fixed ones
        m = h[None] * (free[:, :, None] & free[:, None, :]) + eye[None] * fixed[:, None, :]
        rhs = np.where(free, g_ - value @ h, value)
        a[todo] = np.linalg.solve(m, rhs[..., None])[..., 0]
        mu[todo] = np.where(free, 0.0, a[todo] @ h - g_)
    return a


def _bvls_rows(h, g, lo, hi, rows: np.ndarray) -> np.ndarray:
    """Exact fallback: each QP as bounded least squares ||L'a - L^-1 g|| (H = LL')."""
    from scipy.optimize import lsq_linear

    chol = np.linalg.cholesky(h)
    out = np.empty((len(rows), h.shape[0]))
    for j, gi in enumerate(g[rows]):
        rhs = np.linalg.solve(chol, gi)
        out[j] = lsq_linear(chol.T, rhs, bounds=(lo, hi), method="bvls", tol=1e-12).x
    return out


def solve_box_qp(
    h: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_iter: int = 30
) -> np.ndarray:
    """Solve one QP per row of ``g`` (n, k) with shared ``h`` (k, k) and bounds (k,).

    ``lo``/``hi`` may hold -inf/inf for free variables. Returns (n, k).
    """
    h = np.asarray(h, dtype=np.float64)
    g = np.atleast_2d(np.asarray(g, dtype=np.float64))
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if len(g) == 0:
        return np.zeros((0, h.shape[0]))
    d = 1.0 / np.sqrt(np.diag(h))
    hs, gs = h * np.outer(d, d), g * d
    los, his = lo / d, hi / d
    a = np.clip(np.linalg.solve(hs, gs.T).T, los, his)
    a = _active_set(hs, gs, los, his, a, max_iter)
    ok = _kkt_ok(hs, gs, a, los, his)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        a[bad] = _bvls_rows(hs, gs, los, his, bad)
    return np.clip(a * d, lo, hi)  # exact bounds despite the rescaling round-off
