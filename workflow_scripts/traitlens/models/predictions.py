"""Per-video prediction tables: what every model writes and the evaluation reads.

``models/<model>/predictions.tsv``: one row per video the model could score,
columns video_id, split (train | validation | test) and the five traits in
:data:`PREDICTION_COLUMNS` order. A video a model could not score (no face in any frame,
no audio) has no row; the evaluation decides what to do about it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import UserError
from traitlens.core.h5checks import rebuild_hint
from traitlens.core.tables import read_table
from traitlens.ingest.labels import BIG_FIVE

PREDICTION_COLUMNS = ("video_id", "split", *BIG_FIVE)
SPLITS = ("train", "validation", "test")
FLOAT_FORMAT = "%.6f"


def write_predictions(table: pd.DataFrame, path: str | Path) -> None:
    """Write a prediction table (columns checked, rows sorted by video id) atomically."""
    missing = [c for c in PREDICTION_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"prediction table lacks columns {missing}")
    out = table.loc[:, list(PREDICTION_COLUMNS)].sort_values("video_id", kind="stable")
    with atomic_path(path) as tmp:
        out.to_csv(tmp, sep="\t", index=False, float_format=FLOAT_FORMAT)


# The rule that writes each model's predictions.tsv (named in messages about a bad one)
PRODUCED_BY = {
    "img": "predict_visual",
    "face": "predict_visual",
    "audio": "train_linear_model",
    "aus": "train_linear_model",
    "img+audio": "fuse_predictions",
}


def read_predictions(path: str | Path, rule: str) -> pd.DataFrame:
    """Read a prediction table written by ``rule``; UserError naming the file when it is
    not one."""
    table = read_table(
        path, "prediction", rule, PREDICTION_COLUMNS, dtype={"video_id": str, "split": str}
    )
    bad_split = sorted(set(table["split"]) - set(SPLITS))
    if bad_split or not np.isfinite(table[list(BIG_FIVE)].to_numpy(dtype=float)).all():
        problem = f"unknown splits {bad_split}" if bad_split else "non-finite predictions"
        raise UserError(
            f"{path}: not a valid prediction table ({problem}); {rebuild_hint(path, rule)}"
        )
    return table


def read_labels(manifest: str | Path) -> pd.DataFrame:
    """video_id, split and the five traits of every video in a manifest.tsv."""
    table = read_table(
        manifest, "manifest", "build_manifest", PREDICTION_COLUMNS, {"video_id": str, "split": str}
    )
    return table.loc[:, list(PREDICTION_COLUMNS)]
