"""What accuracy the demo's labels allow, beside what the models reach (docs/validation.md).

The accuracy goal (test MAE <= 0.70x the train-mean baseline's) gets the same kind of
controls as the interpretability checks:

- positive control: the workflow's ridge model (:mod:`traitlens.models.ridge`, the AU and
  audio models' fit) on the PLANTED per-video AU means, the drivers the labels were made
  from. It is what a model that read the planted signal off the faces perfectly reaches on
  these people; it must meet the goal, or the goal is out of reach on this data;
- negative control: the same fit with each video given another video's planted values
  (shuffled over the manifest's groups, so no video keeps its own person's values); it
  must miss the goal, or the check passes by construction.

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
) -> dict[str, float]:
    """MAE ratios on ``split`` of the ridge on the planted drivers (``ORACLE_SETS``) and of
    its shuffled control (``oracle_visual_shuffled``).

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
) -> dict[str, float | None]:
    """planted.json's accuracy keys: ``<model>_<split>_mae_ratio`` for the models and the
    oracle controls."""
    ratios = model_mae_ratios(accuracy, split) | ceiling_ratios(
        truth_videos, labels, groups, alphas, default_alpha, split
    )
    return {f"{name}_{split}_mae_ratio": value for name, value in ratios.items()}
