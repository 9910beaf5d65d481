"""Late fusion of the image and the audio model (docs/method.md §1, "img + audio").

Per trait, ``image_weight * image + (1 - image_weight) * audio`` for every video both
models scored (the paper averages: weight 0.5). A video only one model scored (no face
in any frame, no audio track) keeps that model's prediction, so the fused model scores
the union of the two; the counts of both kinds are logged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import pandas as pd

from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.models.predictions import PREDICTION_COLUMNS

log = logging.getLogger("traitlens.models.fusion")


@dataclass(frozen=True)
class FusionCounts:
    both: int
    image_only: int
    audio_only: int

    def line(self) -> str:
        return (
            f"{self.both} videos fused, {self.image_only} image-only and "
            f"{self.audio_only} audio-only videos keep that model's prediction"
        )


def fuse(
    image: pd.DataFrame, audio: pd.DataFrame, image_weight: float
) -> tuple[pd.DataFrame, dict[str, FusionCounts]]:
    """Fused prediction table (:data:`PREDICTION_COLUMNS`) of two prediction tables, and
    per split how many videos were fused or kept one model's prediction."""
    w = float(image_weight)
    if not (math.isfinite(w) and 0.0 <= w <= 1.0):
        raise UserError(f"fusion image_weight must be in [0, 1], got {image_weight}")
    traits = list(BIG_FIVE)
    merged = image.loc[:, list(PREDICTION_COLUMNS)].merge(
        audio.loc[:, list(PREDICTION_COLUMNS)],
        on="video_id",
        how="outer",
        suffixes=("_img", "_aud"),
        indicator=True,
    )
    both = merged["_merge"] == "both"
    clash = both & (merged["split_img"] != merged["split_aud"])
    if clash.any():
        raise UserError(
            f"{int(clash.sum())} videos have a different split in the image and the audio "
            f"predictions (e.g. {merged.loc[clash, 'video_id'].iloc[0]}): they were made from "
            "different manifests; rerun snakemake so that both are rebuilt"
        )
    out = pd.DataFrame({"video_id": merged["video_id"]})
    out["split"] = merged["split_img"].fillna(merged["split_aud"])
    for t in traits:
        img, aud = merged[f"{t}_img"], merged[f"{t}_aud"]
        # One side missing -> the other side alone (fillna), not NaN.
        out[t] = (w * img + (1.0 - w) * aud).where(both, img.fillna(aud))
    source = merged["_merge"].astype(str)
    counts = {
        split: FusionCounts(
            int((source[rows] == "both").sum()),
            int((source[rows] == "left_only").sum()),
            int((source[rows] == "right_only").sum()),
        )
        for split, rows in out.groupby("split").groups.items()
    }
    return out, counts


def choose_image_weight(
    image: pd.DataFrame, audio: pd.DataFrame, labels: pd.DataFrame, grid: int = 21
) -> tuple[float, dict[float, float]]:
    """The image weight (of ``grid`` evenly spaced in [0, 1]) whose fusion has the lowest
    validation MAE over the videos both models scored, and the MAE of every weight.

    Ties go to the weight nearest 0.5 (the paper's average). UserError when no validation
    video has both predictions.
    """
    cols = list(BIG_FIVE)
    val = labels.loc[labels["split"] == "validation", ["video_id", *cols]]
    both = val.merge(image[["video_id", *cols]], on="video_id", suffixes=("", "_img")).merge(
        audio[["video_id", *cols]], on="video_id", suffixes=("", "_aud")
    )
    if both.empty:
        raise UserError(
            "models.fusion.image_weight is 'validation' but no validation video has both an "
            "image and an audio prediction; give a number in [0, 1] instead"
        )
    truth = both[cols].to_numpy(float)
    img = both[[f"{t}_img" for t in cols]].to_numpy(float)
    aud = both[[f"{t}_aud" for t in cols]].to_numpy(float)
    maes = {
        float(w): float(abs(w * img + (1 - w) * aud - truth).mean())
        for w in [round(k / (grid - 1), 6) for k in range(grid)]
    }
    best = min(maes, key=lambda w: (round(maes[w], 12), abs(w - 0.5)))
    return best, maes
