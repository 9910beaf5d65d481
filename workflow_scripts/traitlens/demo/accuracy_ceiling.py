"""What accuracy the demo's labels allow, beside what the models reach (docs/validation.md).

The accuracy goal (test MAE <= 0.70x the train-mean baseline's) gets the same kind of
controls as the interpretability checks:

- positive control: the workflow's ridge model (:mod:`traitlens.models.ridge`, the AU and
  audio models' fit) on the PLANTED per-video AU means, the drivers the labels were made
  from. It is what a model that read the planted signal off the faces perfectly reaches on
  these people; it must meet the goal, or the goal is out of reach on this data;
- negative control: the same fit with each video given another video's planted values
  (shuffled over the manifest's groups, so no video keeps its own person's values); it
  must miss the goal, or the check passes by construction;
- a diagnostic between the two, ``landmark_ridge``: the same ridge on what the face stage
  measured from the pixels, each video's mean aligned landmarks (mediapipe's 478 points,
  :func:`traitlens.faces.faces_file.read_video_landmark_means`). Where it meets the goal
  and the CNNs do not, the faces carry the signal and the CNNs fail to read it (the model
  holds the goal back, not the data); ``landmark_ridge_shuffled`` is its negative control;
- a diagnostic of the trained network itself, ``face_units_ridge``: the same ridge on the
  face CNN's own units (each unit's map mean, per video, over the dumped layers). Where
  it meets the goal and the CNN's output does not, the network has learnt features that
  carry the signal and its head is what spends it; ``face_units_ridge_random_init``, the
  same on the untrained network of the same architecture, is its negative control.

The ratios are MAE / train-mean MAE on the same split, as in the accuracy table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from traitlens.core.errors import UserError
from traitlens.models.ridge import fit_predict

ACCURACY_MODELS = ("img", "face", "aus")  # models whose ratio planted.json reports
ORACLE_SETS = {
    # the drivers a visual model can see, then all drivers (the voice's two as well)
    "oracle_visual": ("AU01_mean", "AU43_mean", "AU12_mean", "AU26_mean"),
    "oracle_all": ("AU01_mean", "AU43_mean", "AU12_mean", "AU26_mean", "f0_hz", "loudness_dbfs"),
}


def model_mae_ratios(accuracy: pd.DataFrame, split: str) -> dict[str, float | None]:
    """Each model's MAE / train_mean's on ``split``, from tables/accuracy.tsv (whose
    ``mean`` is 1 - MAE); None for a model the table lacks."""
    rows = accuracy[accuracy["split"].astype(str) == split].set_index("model")
    if "train_mean" not in rows.index:
        raise UserError(f"the accuracy table has no train_mean row for the {split} split")
    baseline = 1.0 - float(rows.at["train_mean", "mean"])
    return {
        m: (1.0 - float(rows.at[m, "mean"])) / baseline if m in rows.index else None
        for m in ACCURACY_MODELS
    }


def landmark_features(
    video_ids: Sequence[str], means: np.ndarray, n_frames: np.ndarray
) -> pd.DataFrame:
    """One row per video (index video_id), the x, y of each landmark as columns, from the
    per-file :class:`~traitlens.faces.faces_file.VideoLandmarkMeans` concatenated; a video
    found in several files is the frame-weighted mean of its parts; NaN rows for videos
    without a face (the ridge leaves them out)."""
    means = np.asarray(means, dtype=np.float64)
    n_frames = np.asarray(n_frames, dtype=np.float64)
    if means.ndim != 3 or means.shape[2] != 2 or not len(means) == len(n_frames) == len(video_ids):
        raise UserError(
            f"landmark means of shape {means.shape} do not fit {len(video_ids)} videos and "
            f"{len(n_frames)} frame counts (expected (videos, landmarks, 2))"
        )
    flat = means.reshape(len(means), -1)
    columns = [f"{axis}{i}" for i in range(means.shape[1]) for axis in "xy"]
    weighted = pd.DataFrame(np.where(n_frames[:, None] > 0, flat, 0.0) * n_frames[:, None])
    weighted["video_id"] = [str(v) for v in video_ids]
    weighted["n"] = n_frames
    sums = weighted.groupby("video_id", sort=True).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        values = sums.drop(columns="n").to_numpy() / sums["n"].to_numpy()[:, None]
    return pd.DataFrame(values, index=sums.index, columns=columns)


def unit_features(layers: Sequence[tuple[str, Sequence[str], np.ndarray]]) -> pd.DataFrame:
    """One row per video (index video_id), one column per unit (``<layer>_<unit>``): the
    mean over the video's frames of each unit's map mean. ``layers``: per dumped layer,
    its name, the video of each frame and the (frames, units) map means."""
    tables = []
    for layer, video_ids, means in layers:
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or len(means) != len(video_ids):
            raise UserError(
                f"layer {layer}: map means of shape {means.shape} do not fit "
                f"{len(video_ids)} frames (expected (frames, units))"
            )
        table = pd.DataFrame(means, columns=[f"{layer}_{u}" for u in range(means.shape[1])])
        tables.append(table.groupby(np.asarray(video_ids, dtype=str), sort=True).mean())
    if not tables:
        raise UserError("no dumped layer to take the units from")
    return pd.concat(tables, axis=1)


def _shuffled_over_groups(table: pd.DataFrame, groups: pd.Series, seed: int) -> pd.DataFrame:
    """Rows given to other videos, each taken from a video of another group (a derangement
    of the groups, so no video keeps its person's values)."""
    rng = np.random.default_rng(seed)
    names = np.array(sorted(groups.unique()))
    if len(names) < 2:
        raise UserError("the shuffled control needs at least 2 groups in the manifest")
    order = rng.permutation(names)
    # each group in a random cycle takes the next one's videos: no group keeps its own
    target = dict(zip(order, np.roll(order, -1), strict=True))
    by_group = {g: list(groups.index[groups == g]) for g in names}
    donors = [
        by_group[target[g]][rng.integers(len(by_group[target[g]]))] for g in groups.to_numpy()
    ]
    out = table.loc[donors].copy()
    out.index = groups.index
    return out


def ceiling_ratios(
    truth_videos: pd.DataFrame,
    labels: pd.DataFrame,
    groups: Mapping[str, str],
    alphas: Iterable[float],
    default_alpha: float,
    split: str,
    seed: int = 0,
    landmarks: pd.DataFrame | None = None,
    units: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, float]:
    """MAE ratios on ``split`` of the ridge on the planted drivers (``ORACLE_SETS``) and of
    its shuffled control (``oracle_visual_shuffled``); with ``landmarks``
    (:func:`landmark_features`), also of the ridge on them (``landmark_ridge``) and its
    shuffled control (``landmark_ridge_shuffled``); with ``units`` (name ->
    :func:`unit_features`, e.g. ``face_units_ridge`` and its untrained control), of the
    ridge on each.

    ``truth_videos``: the ground truth's videos.tsv (index video_id); ``labels``:
    :func:`traitlens.models.predictions.read_labels`'s table; ``groups``: video -> group.
    """
    alphas = list(alphas)
    missing = [c for cols in ORACLE_SETS.values() for c in cols if c not in truth_videos]
    if missing:
        raise UserError(f"the ground truth's videos.tsv lacks the columns {sorted(set(missing))}")
    videos = labels["video_id"].astype(str)
    truth = truth_videos.reindex(videos)
    group_of = pd.Series([groups.get(v, v) for v in videos], index=videos.to_numpy())
    out = {}
    for name, columns in ORACLE_SETS.items():
        out[name] = _ratio(truth[list(columns)], labels, alphas, default_alpha, split)
    shuffled = _shuffled_over_groups(truth[list(ORACLE_SETS["oracle_visual"])], group_of, seed)
    out["oracle_visual_shuffled"] = _ratio(shuffled, labels, alphas, default_alpha, split)
    if landmarks is not None:
        seen = landmarks.reindex(videos)
        out["landmark_ridge"] = _ratio(seen, labels, alphas, default_alpha, split)
        shuffled = _shuffled_over_groups(seen, group_of, seed)
        out["landmark_ridge_shuffled"] = _ratio(shuffled, labels, alphas, default_alpha, split)
    for name, table in (units or {}).items():
        out[name] = _ratio(table.reindex(videos), labels, alphas, default_alpha, split)
    return out


def _ratio(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    alphas: Sequence[float],
    default_alpha: float,
    split: str,
) -> float:
    _, _, counts = fit_predict(features, labels, alphas, default_alpha)
    count = next(c for c in counts if c.split == split)
    return float(count.mae / count.baseline_mae)


def accuracy_ratios(
    accuracy: pd.DataFrame,
    truth_videos: pd.DataFrame,
    labels: pd.DataFrame,
    groups: Mapping[str, str],
    alphas: Iterable[float],
    default_alpha: float,
    split: str = "test",
    landmarks: pd.DataFrame | None = None,
    units: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, float | None]:
    """planted.json's accuracy keys: ``<model>_<split>_mae_ratio`` for the models, the
    oracle controls and, with ``landmarks`` and ``units``, the diagnostics' ridges."""
    ratios = model_mae_ratios(accuracy, split) | ceiling_ratios(
        truth_videos, labels, groups, alphas, default_alpha, split, 0, landmarks, units
    )
    return {f"{name}_{split}_mae_ratio": value for name, value in ratios.items()}
