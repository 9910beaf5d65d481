"""The AU model of docs/method.md §5: a linear regressor on the 17 AU intensities.

Each video is described by the mean intensity of the 17 OpenFace 2.0 AUs
(:data:`traitlens.aus.estimate_aus.OPENFACE_17`) over its frames with a usable face, read from the
``aus/<shard>.videos.tsv`` files of the AU stage; the fit is :mod:`traitlens.models.ridge`.
With a linear model, regressing on the per-video mean is the same model as regressing per
frame and averaging the frame predictions, which is how the CNNs score a video.
A video without a usable face (empty AU cells) gets no prediction; the count is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.aus.estimate_aus import OPENFACE_17
from traitlens.core.errors import UserError
from traitlens.core.h5checks import rebuild_hint
from traitlens.core.tables import read_table
from traitlens.models.ridge import stack_shards

log = logging.getLogger("traitlens.models.au_regression")

AU_RULE = "estimate_aus"


def read_au_videos(path: str | Path, columns: tuple[str, ...] = OPENFACE_17) -> pd.DataFrame:
    """One ``aus/<shard>.videos.tsv`` as a table (index video_id) of ``columns``, all
    videos (NaN where a video had no usable face); UserError naming the file if it is not
    such a table."""
    table = read_table(path, "per-video AU", AU_RULE, ("video_id", *columns), {"video_id": str})
    values = table.loc[:, list(columns)].apply(pd.to_numeric, errors="coerce")
    # A cell that is neither empty nor a number is damage, not a missing face.
    bad = values.isna() & table.loc[:, list(columns)].notna()
    if bad.any(axis=None):
        raise UserError(f"{path}: non-numeric AU values; {rebuild_hint(path, AU_RULE)}")
    return values.set_axis(pd.Index(table["video_id"], name="video_id"))


def read_au_features(
    paths: Iterable[str | Path], columns: tuple[str, ...] = OPENFACE_17
) -> pd.DataFrame:
    """The AU features of all shards (index video_id), only videos with every AU."""
    features = stack_shards((path, read_au_videos(path, columns)) for path in paths)
    usable = np.isfinite(features.to_numpy(dtype=np.float64)).all(axis=1)
    if not usable.all():
        faceless = list(features.index[~usable])
        shown = ", ".join(faceless[:5]) + (" ..." if len(faceless) > 5 else "")
        log.info("%d videos without a usable face get no AU prediction: %s", len(faceless), shown)
    log.info("AU features: %d videos, %d AUs per video", int(usable.sum()), len(columns))
    return features[usable]
