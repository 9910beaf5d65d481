"""Cluster bootstrap: a CI of one model's mean accuracy and a paired model comparison.

Both resample *groups* (persons: clips of one person are correlated) with replacement and
take all of a drawn group's videos, keeping a video's five trait errors together; both use
the percentile method. A resample's mean is the ratio of its sums, sum of the drawn
groups' per-video values over their number of videos, so groups of unequal size weigh as
their videos do. ``groups=None``, or groups that are all single videos, is the plain
bootstrap over videos, with exactly its draws and results.

The resampling index matrix is drawn from ``numpy.random.default_rng(seed)`` in chunks of
rows, so memory stays bounded (about ``_CHUNK_ELEMENTS`` indices at a time) for 10,000
videos x 2,000 resamples; numpy draws the same stream whatever the chunk size, so the
result depends only on (the groups, n_boot, seed). The same seed on the same videos
therefore draws the same resamples for every model, which keeps the single-model CIs and
the paired comparisons consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traitlens.evaluation.metrics import video_accuracy

_CHUNK_ELEMENTS = 1 << 22  # 4 Mi int64 indices = 32 MiB per chunk


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile bootstrap confidence interval."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class PairedComparison:
    """Model A - model B in mean accuracy on the same videos (see :func:`paired_bootstrap`)."""

    diff: float
    low: float
    high: float
    p_value: float
    n_videos: int
    n_boot: int
    n_groups: int  # the resampled units; n_videos when every video is its own group


def _check(n_boot: int, confidence: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def group_codes(groups: np.ndarray | None, n: int) -> np.ndarray | None:
    """Each video's group as an integer 0..G-1 (groups in sorted order), or None when
    ``groups`` is None or every group holds one video (then the bootstrap is over videos).
    """
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must give one group per video, shape ({n},), got {groups.shape}")
    _, codes = np.unique(groups, return_inverse=True)
    n_groups = int(codes.max()) + 1 if n else 0
    return None if n_groups == n else codes.reshape(n)


def count_groups(groups: np.ndarray | None, n: int) -> int:
    """The number of resampled units: distinct groups, or n videos when ``groups`` is None."""
    codes = group_codes(groups, n)
    return n if codes is None else int(codes.max()) + 1


def resampled_means(
    values: np.ndarray,
    n_boot: int,
    seed: int,
    chunk_elements: int = _CHUNK_ELEMENTS,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of the n entries of ``values`` (n,).

    With ``groups`` (n,), one label per entry, each resample draws the G groups with
    replacement and its mean is (sum of the drawn groups' values) / (their number of
    entries). Rows of the (n_boot, units) index matrix are drawn ``chunk_elements //
    units`` at a time.
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    if values.ndim != 1 or n == 0:
        raise ValueError(f"need a non-empty 1-D array of per-video values, got {values.shape}")
    codes = group_codes(groups, n)
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    if codes is None:
        rows = max(1, chunk_elements // n)
        for start in range(0, n_boot, rows):
            stop = min(start + rows, n_boot)
            out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
        return out
    # Per-group sums and sizes: a resample touches G numbers, not its videos.
    sums = np.bincount(codes, weights=values)
    sizes = np.bincount(codes).astype(float)
    n_groups = sums.shape[0]
    rows = max(1, chunk_elements // n_groups)
    for start in range(0, n_boot, rows):
        stop = min(start + rows, n_boot)
        drawn = rng.integers(0, n_groups, size=(stop - start, n_groups))
        out[start:stop] = sums[drawn].sum(axis=1) / sizes[drawn].sum(axis=1)
    return out


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_mean_accuracy(
    pred: np.ndarray,
    label: np.ndarray,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> BootstrapCI:
    """Mean accuracy of ``pred`` (n_videos, 5) against ``label`` with a percentile CI;
    ``groups`` (n_videos,) labels each video's person (None: each video its own group)."""
    _check(n_boot, confidence)
    per_video = video_accuracy(pred, label)
    means = resampled_means(per_video, n_boot, seed, groups=groups)
    low, high = _percentiles(means, confidence)
    return BootstrapCI(float(per_video.mean()), low, high)


def paired_bootstrap(
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    label: np.ndarray,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> PairedComparison:
    """Difference in mean accuracy, model A - model B, scored on the same videos.

    Each resample draws groups (``groups``, as in :func:`bootstrap_mean_accuracy`; None:
    videos) with replacement and scores both models on that one draw (paired), so the
    per-video difference ``d_i = acc_A(i) - acc_B(i)`` is resampled.
    ``diff`` is mean(d); ``low``/``high`` the percentile CI of the resampled means d*_b.
    Two-sided p-value for "no difference"::

        p = min(1, max(2 * min(#{d*_b <= 0}, #{d*_b >= 0}) / n_boot, 1 / (n_boot + 1)))

    i.e. twice the smaller share of resampled differences on either side of 0 (both
    shares count ties), floored at 1/(n_boot + 1) because n_boot resamples cannot show a
    smaller p. Two identical models give diff 0 and p = 1.
    """
    _check(n_boot, confidence)
    d = video_accuracy(pred_a, label) - video_accuracy(pred_b, label)
    means = resampled_means(d, n_boot, seed, groups=groups)
    low, high = _percentiles(means, confidence)
    tail = min(np.count_nonzero(means <= 0), np.count_nonzero(means >= 0)) / n_boot
    p = min(1.0, max(2.0 * tail, 1.0 / (n_boot + 1)))
    n = int(d.shape[0])
    return PairedComparison(float(d.mean()), low, high, p, n, int(n_boot), count_groups(groups, n))
