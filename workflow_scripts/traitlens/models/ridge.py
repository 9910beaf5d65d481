"""The one linear model of the workflow: standardised ridge regression on per-video features.

docs/method.md's audio model (linear regression on log filter-bank features) and AU model (a
linear regressor on the 17 AU intensities) are both this model on different feature tables:

- features are standardised with the mean and standard deviation of the TRAIN rows only
  (a zero-variance column gets scale 1, so it is constant and its coefficient 0);
- closed-form ridge for the five traits at once; the intercept is not penalised;
- alpha is chosen from a list by the validation MAE (mean over the traits) when the
  validation split has labelled videos with features, else the configured default; the
  final model is the train-only fit at that alpha (validation is not folded back in, so
  the validation predictions are those the alpha was chosen on, as for the CNNs);
- predictions are clipped to [0, 1], the range of the labels;
- a video with a missing feature (NaN) is neither fitted nor scored: it gets no row in
  the prediction table (the evaluation decides what to do about it).

The fitted model is stored as JSON (:func:`save_model`), never as a pickle.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import write_text_atomic
from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.models.predictions import SPLITS, read_labels, write_predictions

log = logging.getLogger("traitlens.models.ridge")

MODEL_FORMAT = "traitlens.models.ridge/1"
# A column whose train standard deviation is below this (relative to its magnitude) is
# constant up to rounding: dividing by it would blow rounding noise up into a feature.
ZERO_VARIANCE_RTOL = 1e-12


# --- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class RidgeModel:
    """A fitted model: ``clip(((x - means) / scales) @ coef + intercept, 0, 1)``."""

    alpha: float
    feature_names: tuple[str, ...]
    targets: tuple[str, ...]
    means: np.ndarray  # (n_features,)
    scales: np.ndarray  # (n_features,)
    coef: np.ndarray  # (n_features, n_targets), on the standardised features
    intercept: np.ndarray  # (n_targets,)
    n_train: int
    # (alpha, mean validation MAE) per candidate alpha; empty when none was validated
    validation_mae: tuple[tuple[float, float], ...] = ()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, n_targets) predictions in [0, 1]; a row with a NaN feature gets NaN."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected (n, {len(self.feature_names)}) features, got {x.shape}")
        pred = np.clip(((x - self.means) / self.scales) @ self.coef + self.intercept, 0.0, 1.0)
        pred[~np.isfinite(x).all(axis=1)] = np.nan
        return pred

    def feature_unit_coef(self) -> np.ndarray:
        """The coefficients per unit of the raw (unstandardised) features."""
        return self.coef / self.scales[:, None]

    def to_dict(self) -> dict:
        return {
            "format": MODEL_FORMAT,
            "alpha": self.alpha,
            "feature_names": list(self.feature_names),
            "targets": list(self.targets),
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "coefficients": self.coef.tolist(),
            "intercepts": self.intercept.tolist(),
            "n_train": self.n_train,
            "validation_mae": [{"alpha": a, "mae": m} for a, m in self.validation_mae],
        }

    @classmethod
    def from_dict(cls, d: dict) -> RidgeModel:
        """The inverse of :meth:`to_dict`; ValueError when ``d`` is not such a model."""
        if d.get("format") != MODEL_FORMAT:
            raise ValueError(f"format is {d.get('format')!r}, expected {MODEL_FORMAT!r}")
        names, targets = tuple(d["feature_names"]), tuple(d["targets"])
        model = cls(
            alpha=float(d["alpha"]),
            feature_names=names,
            targets=targets,
            means=np.asarray(d["means"], dtype=np.float64),
            scales=np.asarray(d["scales"], dtype=np.float64),
            coef=np.asarray(d["coefficients"], dtype=np.float64).reshape(len(names), -1),
            intercept=np.asarray(d["intercepts"], dtype=np.float64),
            n_train=int(d["n_train"]),
            validation_mae=tuple((float(r["alpha"]), float(r["mae"])) for r in d["validation_mae"]),
        )
        shapes_ok = (
            model.means.shape == model.scales.shape == (len(names),)
            and model.coef.shape == (len(names), len(targets))
            and model.intercept.shape == (len(targets),)
        )
        if not shapes_ok:
            raise ValueError("array lengths do not match the feature and target names")
        return model


def save_model(model: RidgeModel, path: str | Path) -> None:
    """Write the model as JSON (floats at full precision), atomically."""
    write_text_atomic(path, json.dumps(model.to_dict(), indent=1) + "\n")


def load_model(path: str | Path) -> RidgeModel:
    """Read a model written by :func:`save_model`; UserError naming the file if it is not."""
    try:
        return RidgeModel.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a traitlens ridge model ({err})") from None


# --- fitting on arrays ----------------------------------------------------------------


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (population std; 1 for a zero-variance column) of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    means = x.mean(axis=0)
    std = x.std(axis=0)
    constant = std <= ZERO_VARIANCE_RTOL * np.maximum(1.0, np.abs(means))
    return means, np.where(constant, 1.0, std)


def solve_ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (p, t) and intercept (t,) minimising |y - z b - c|^2 + alpha |b|^2.

    The intercept is left out of the penalty by centring. Solved as least squares on
    ``[z; sqrt(alpha) I]`` rather than through the normal equations: that stays well
    conditioned, and alpha 0 (or more features than rows) gives the minimum-norm solution.
    """
    z_mean, y_mean = z.mean(axis=0), y.mean(axis=0)
    zc, yc = z - z_mean, y - y_mean
    p = z.shape[1]
    a = np.vstack([zc, math.sqrt(alpha) * np.eye(p)])
    b = np.vstack([yc, np.zeros((p, y.shape[1]))])
    coef = np.linalg.lstsq(a, b, rcond=None)[0]
    return coef, y_mean - z_mean @ coef


def mean_abs_error(pred: np.ndarray, truth: np.ndarray) -> float:
    """MAE per target, averaged over the targets (1 - docs/method.md's mean accuracy)."""
    return float(np.mean(np.abs(np.asarray(pred) - np.asarray(truth))))


def fit_ridge(
    x: np.ndarray,
    y: np.ndarray,
    alpha: float,
    feature_names: Sequence[str],
    targets: Sequence[str] = BIG_FIVE,
) -> RidgeModel:
    """Ridge at one ``alpha`` on train rows ``x`` (n, p) and labels ``y`` (n, t)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    means, scales = standardisation(x)
    coef, intercept = solve_ridge((x - means) / scales, y, alpha)
    return RidgeModel(
        float(alpha), tuple(feature_names), tuple(targets), means, scales, coef, intercept, len(x)
    )


def check_alphas(alphas: Iterable[float], default_alpha: float) -> tuple[list[float], float]:
    """The candidate alphas (sorted, unique) and the default; UserError if not >= 0."""
    try:
        values = sorted({float(a) for a in alphas})
        default = float(default_alpha)
    except (TypeError, ValueError) as err:
        raise UserError(f"ridge alphas must be numbers ({err})") from None
    if not values or not all(math.isfinite(a) and a >= 0 for a in (*values, default)):
        raise UserError(
            f"ridge alphas must be a non-empty list of finite numbers >= 0 and the default "
            f"alpha one such number; got alphas {list(alphas)}, default {default_alpha}"
        )
    return values, default


def select_and_fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    alphas: Iterable[float],
    default_alpha: float,
    feature_names: Sequence[str],
    targets: Sequence[str] = BIG_FIVE,
) -> RidgeModel:
    """Fit at every alpha on train, keep the one with the lowest validation MAE.

    Ties go to the larger alpha (the simpler model). Without validation rows the model is
    fitted at ``default_alpha``.
    """
    candidates, default = check_alphas(alphas, default_alpha)
    if x_val is None or len(x_val) == 0:
        return fit_ridge(x_train, y_train, default, feature_names, targets)
    fits = [fit_ridge(x_train, y_train, a, feature_names, targets) for a in candidates]
    scores = [mean_abs_error(m.predict(x_val), y_val) for m in fits]
    best = min(range(len(fits)), key=lambda i: (scores[i], -candidates[i]))
    return replace(fits[best], validation_mae=tuple(zip(candidates, scores, strict=True)))


# --- fitting on tables ----------------------------------------------------------------


def stack_shards(tables: Iterable[tuple[str | Path, pd.DataFrame]]) -> pd.DataFrame:
    """One feature table (index video_id) from per-shard tables; UserError naming the
    files when a video appears in two of them or their columns differ."""
    tables = list(tables)
    if not tables:
        raise UserError("no feature files were given")
    seen: dict[str, str | Path] = {}
    first_path, first = tables[0]
    for path, table in tables:
        if list(table.columns) != list(first.columns):
            raise UserError(
                f"{path}: feature columns differ from those of {first_path}; the shards were "
                "made with different settings: delete them and rerun snakemake"
            )
        for vid in table.index:
            if vid in seen:
                raise UserError(f"video {vid} appears in both {seen[vid]} and {path}")
            seen[vid] = path
    return pd.concat([t for _, t in tables])


@dataclass(frozen=True)
class SplitCounts:
    """Per split: videos in the manifest, those with usable features, and the MAEs."""

    split: str
    n_videos: int
    n_with_features: int
    mae: float  # of the model on the labelled videos with features (NaN if none)
    baseline_mae: float  # of predicting the train mean of every trait

    def line(self) -> str:
        return (
            f"{self.split}: {self.n_with_features} of {self.n_videos} videos with features, "
            f"MAE {self.mae:.4f} (train-mean baseline {self.baseline_mae:.4f})"
        )


def fit_predict(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    alphas: Iterable[float],
    default_alpha: float,
) -> tuple[RidgeModel, pd.DataFrame, list[SplitCounts]]:
    """Fit on the train videos and predict every manifest video that has features.

    ``features``: index video_id, one column per feature (NaN = missing);
    ``labels``: :func:`traitlens.models.predictions.read_labels`'s table. Videos with features
    but no label row are ignored. Returns the model, the prediction table
    (:data:`traitlens.models.predictions.PREDICTION_COLUMNS`) and per-split counts.
    """
    traits = list(BIG_FIVE)
    x_all = features.reindex(labels["video_id"]).to_numpy(dtype=np.float64)
    y_all = labels[traits].to_numpy(dtype=np.float64)
    has_x = np.isfinite(x_all).all(axis=1)
    has_y = np.isfinite(y_all).all(axis=1)
    split = labels["split"].to_numpy()
    fit_rows = {s: has_x & has_y & (split == s) for s in SPLITS}
    if not fit_rows["train"].any():
        raise UserError(
            "no train video has both labels and features: nothing to fit the linear model on "
            f"({int((split == 'train').sum())} train videos in the manifest, "
            f"{int((has_x & (split == 'train')).sum())} with features)"
        )
    model = select_and_fit(
        x_all[fit_rows["train"]],
        y_all[fit_rows["train"]],
        x_all[fit_rows["validation"]],
        y_all[fit_rows["validation"]],
        alphas,
        default_alpha,
        list(features.columns),
        traits,
    )
    pred = model.predict(x_all[has_x])
    table = labels.loc[has_x, ["video_id", "split"]].reset_index(drop=True)
    table[traits] = pred

    train_mean = y_all[fit_rows["train"]].mean(axis=0)
    pred_all = np.full_like(y_all, np.nan)
    pred_all[has_x] = pred
    counts = []
    for s in SPLITS:
        rows = fit_rows[s]
        counts.append(
            SplitCounts(
                s,
                int((split == s).sum()),
                int((has_x & (split == s)).sum()),
                mean_abs_error(pred_all[rows], y_all[rows]) if rows.any() else math.nan,
                mean_abs_error(train_mean, y_all[rows]) if rows.any() else math.nan,
            )
        )
    return model, table, counts


def train_linear_model(
    name: str,
    features: pd.DataFrame,
    labels_path: str | Path,
    alphas: Iterable[float],
    default_alpha: float,
    model_path: str | Path,
    predictions_path: str | Path,
) -> tuple[RidgeModel, list[SplitCounts]]:
    """What the entry scripts run: fit, log the counts and the alpha, write both outputs."""
    labels = read_labels(labels_path)
    unlabelled = int((~features.index.isin(labels["video_id"])).sum())
    if unlabelled:
        log.warning("%s: %d videos with features are not in %s", name, unlabelled, labels_path)
    model, table, counts = fit_predict(features, labels, alphas, default_alpha)
    log.info(
        "%s model: %d features, %d train videos fitted",
        name,
        len(model.feature_names),
        model.n_train,
    )
    for c in counts:
        log.info("%s %s", name, c.line())
    if model.validation_mae:
        for a, m in model.validation_mae:
            log.info("%s alpha %g: validation MAE %.5f", name, a, m)
        chosen = dict(model.validation_mae)[model.alpha]
        log.info("%s: alpha %g chosen (validation MAE %.5f)", name, model.alpha, chosen)
    else:
        log.info("%s: no validation videos with features; default alpha %g", name, model.alpha)
    save_model(model, model_path)
    write_predictions(table, predictions_path)
    return model, counts
