"""Regression metrics of trait predictions: the paper's accuracy plus Pearson r, CCC and R^2.

Every function takes ``pred`` and ``label`` arrays of the same shape ``(n_videos, n_traits)``
(the five traits in :data:`traitlens.ingest.labels.BIG_FIVE` order) and works per column, i.e.
per trait. Accuracy is the ChaLearn one: ``1 - mean |pred - label|`` (1 - MAE).

Undefined values are NaN, never an exception or a warning:
- Pearson r is NaN when the predictions or the labels of a trait are constant (e.g. the
  train-mean baseline, which predicts one value for every video);
- CCC is NaN only when both are constant and equal;
- R^2 is NaN when the labels of a trait are constant.
"""

from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "pearson_r", "ccc", "r2")


def _pair(pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=float)
    label = np.asarray(label, dtype=float)
    if pred.shape != label.shape or pred.ndim != 2 or pred.shape[0] == 0:
        raise ValueError(
            f"predictions {pred.shape} and labels {label.shape} must share one non-empty "
            "(n_videos, n_traits) shape"
        )
    return pred, label


def _centred(x: np.ndarray) -> np.ndarray:
    """x minus its column mean, exactly 0 in constant columns.

    The float mean of n equal values can be off by an ulp; without this a constant
    prediction would get a tiny non-zero spread and a meaningless r of about +-1.
    """
    return np.where(np.ptp(x, axis=0) > 0, x - x.mean(axis=0), 0.0)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0 (an undefined metric), without a warning."""
    out = np.full(np.shape(num), np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def trait_accuracy(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-trait accuracy, ``1 - mean_videos |pred - label|``, shape (n_traits,)."""
    pred, label = _pair(pred, label)
    return 1.0 - np.abs(pred - label).mean(axis=0)


def video_accuracy(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-video accuracy averaged over traits, shape (n_videos,).

    Its mean over videos equals :func:`mean_accuracy`, which is what lets the bootstrap
    resample videos on this one vector.
    """
    pred, label = _pair(pred, label)
    return 1.0 - np.abs(pred - label).mean(axis=1)


def mean_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    """The paper's "mean accuracy": the average of the per-trait accuracies."""
    return float(trait_accuracy(pred, label).mean())


def pearson_r(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-trait Pearson correlation; NaN for a trait whose predictions or labels are constant."""
    pred, label = _pair(pred, label)
    dp, dl = _centred(pred), _centred(label)
    r = _ratio((dp * dl).sum(axis=0), np.sqrt((dp**2).sum(axis=0) * (dl**2).sum(axis=0)))
    return np.clip(r, -1.0, 1.0)  # rounding can overshoot +-1 by an ulp


def ccc(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-trait Lin's concordance correlation coefficient (population moments, ddof=0).

    ``2 cov(p, l) / (var(p) + var(l) + (mean(p) - mean(l))^2)``: r penalised for any shift
    or scale difference, so it is at most |r| and 1 only for a perfect prediction.
    """
    pred, label = _pair(pred, label)
    dp, dl = _centred(pred), _centred(label)
    shift = pred.mean(axis=0) - label.mean(axis=0)
    den = (dp**2).mean(axis=0) + (dl**2).mean(axis=0) + shift**2
    return _ratio(2.0 * (dp * dl).mean(axis=0), den)


def r2(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-trait coefficient of determination ``1 - SS_res / SS_tot`` (negative when worse
    than predicting the labels' own mean); NaN for a trait whose labels are constant."""
    pred, label = _pair(pred, label)
    ss_res = ((label - pred) ** 2).sum(axis=0)
    ss_tot = (_centred(label) ** 2).sum(axis=0)
    return 1.0 - _ratio(ss_res, ss_tot)


def trait_metrics(pred: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
    """All per-trait metrics, keyed by :data:`METRICS`, each of shape (n_traits,)."""
    return {
        "accuracy": trait_accuracy(pred, label),
        "pearson_r": pearson_r(pred, label),
        "ccc": ccc(pred, label),
        "r2": r2(pred, label),
    }
