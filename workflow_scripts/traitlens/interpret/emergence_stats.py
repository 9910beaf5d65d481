"""The emergence statistic of docs/method.md §5: I_max and its p-value, in log space.

F frames; {F_AU} = the N frames with the highest intensity of an AU; {F_unit} = the N
frames with the highest activation of a unit; I_max = the largest |{F_AU} & {F_unit}|
over the U units. The chance of an intersection of at least k = I_max for one unit is the
upper tail of a hypergeometric distribution (F frames, N marked, N drawn); corrected for
U units, p = 1 - (1 - tail)^U. Both are computed in log space so that neither underflows
nor loses precision for large F. Pure numpy and scipy: the tables and nulls that use it
are :mod:`traitlens.interpret.au_emergence`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp


def _log_comb(n: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    return gammaln(np.asarray(n) + 1) - gammaln(np.asarray(k) + 1) - gammaln(np.asarray(n) - k + 1)


def log_tail(k: int, f: int, n: int) -> float:
    """log P(X >= k), X ~ hypergeometric(F=f frames, N=n marked, N=n drawn):
    log sum_{i=k..N} C(F-N, N-i) C(N, i) / C(F, N)."""
    if not 0 < n <= f:
        raise ValueError(f"need 0 < N <= F, got N={n}, F={f}")
    lo = max(k, 0, 2 * n - f)  # below 2N - F the first factor is 0
    if lo > n:
        return -np.inf
    i = np.arange(lo, n + 1)
    terms = _log_comb(f - n, n - i) + _log_comb(n, i) - _log_comb(f, n)
    return float(min(logsumexp(terms), 0.0))


def log_corrected_p(log_tail_value: float, u: int) -> float:
    """log of p = 1 - (1 - tail)^U, stable when the tail is tiny or U large."""
    if log_tail_value == -np.inf:
        return -np.inf
    if log_tail_value >= 0.0:
        return 0.0
    # log(1 - tail) = log1p(-exp(log_tail)); 1 - (1 - t)^U = -expm1(U * log(1 - t))
    log_keep = np.log1p(-np.exp(log_tail_value))
    inner = u * log_keep
    if inner > -1e-300:  # (1 - t)^U within rounding of 1: p ~ U * t
        return float(np.log(u) + log_tail_value)
    return float(np.log(-np.expm1(inner)))


def top_n_mask(values: np.ndarray, n: int, tie_order: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask (same shape) of the ``n`` largest entries of each column. Ties are
    broken by frame order, or, with ``tie_order`` (a permutation of the frames), by the
    position in it: deterministic either way."""
    values = np.asarray(values)
    if values.ndim == 1:
        return top_n_mask(values[:, None], n, tie_order)[:, 0]
    if tie_order is not None:
        mask = np.empty(values.shape, dtype=bool)
        mask[tie_order] = top_n_mask(values[tie_order], n)
        return mask
    # stable sort of -values: among equal values the earlier frame wins
    order = np.argsort(-values, axis=0, kind="stable")[:n]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=0)
    return mask


@dataclass(frozen=True)
class Emergence:
    unit: int  # best unit (column), the first among ties
    i_max: int
    n: int
    f: int
    u: int
    log_p: float

    @property
    def p(self) -> float:
        return float(np.exp(self.log_p))


def emergence(au: np.ndarray, units: np.ndarray, n: int) -> Emergence:
    """The best unit for one AU: ``au`` (F,) intensities, ``units`` (F, U) activations
    (e.g. each unit's max over its map per frame)."""
    au = np.asarray(au, dtype=float)
    units = np.asarray(units)
    f, u = units.shape
    if au.shape != (f,):
        raise ValueError(f"AU values {au.shape} do not match {f} frames")
    overlap = top_n_mask(au, n).astype(np.int32) @ top_n_mask(units, n).astype(np.int32)
    best = int(np.argmax(overlap))
    k = int(overlap[best])
    return Emergence(best, k, n, f, u, log_corrected_p(log_tail(k, f, n), u))


def null_false_positive_rate(
    au: np.ndarray, units: np.ndarray, n: int, alpha: float, n_perm: int, seed: int
) -> float:
    """Share of permutations (AU values shuffled over frames, which breaks any tie to the
    units) whose best unit reaches p < alpha: the empirical false-positive rate."""
    rng = np.random.default_rng(seed)
    au = np.asarray(au, dtype=float)
    hits = sum(
        emergence(au[rng.permutation(len(au))], units, n).log_p < np.log(alpha)
        for _ in range(n_perm)
    )
    return hits / n_perm


def significance_threshold(f: int, n: int, u: int, alpha: float) -> int:
    """The smallest overlap k whose corrected p is below ``alpha`` (n + 1 when none is):
    p falls with k, so 'best unit significant' is 'I_max >= k'."""
    log_alpha = np.log(alpha)
    for k in range(n + 1):
        if log_corrected_p(log_tail(k, f, n), u) < log_alpha:
            return k
    return n + 1
