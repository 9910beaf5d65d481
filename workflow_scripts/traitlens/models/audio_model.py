"""Audio features for the audio model: each video's log-mel rows pooled over time.

docs/method.md §1: the audio model is a linear regression on log filter-bank features
(Zhang et al.). A clip has a variable number of frames, a linear model needs one vector
per video, so every mel band is summarised by its mean and standard deviation over the
video's frames: ``mel00_mean .. mel39_mean, mel00_std .. mel39_std`` for 40 bands. The
fit itself is :mod:`traitlens.models.ridge`.

Input: the ``audio/<shard>.h5`` files (:mod:`traitlens.extract.audio_file`), read one
shard at a time and one video's rows at a time. A video without audio
(``has_audio`` false or no rows) gets no feature row, so no prediction; the count is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.extract.audio_file import AudioReader
from traitlens.models.ridge import stack_shards

log = logging.getLogger("traitlens.models.audio_model")


def pooled_feature_names(n_mels: int) -> tuple[str, ...]:
    """``melNN_mean`` for every band, then ``melNN_std`` (NN zero-padded to the widest)."""
    width = max(2, len(str(n_mels - 1)))
    bands = [f"mel{b:0{width}d}" for b in range(n_mels)]
    return (*(f"{b}_mean" for b in bands), *(f"{b}_std" for b in bands))


def pool_rows(rows: np.ndarray) -> np.ndarray:
    """(n_frames, n_mels) log-mel rows -> (2 n_mels,) per-band mean then population std."""
    rows = np.asarray(rows, dtype=np.float64)  # float32 sums over ~450 frames lose digits
    return np.concatenate([rows.mean(axis=0), rows.std(axis=0)])


def pool_shard(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """One shard's pooled features (index video_id, only videos with audio) and the ids
    of its videos without audio. UserError naming the file and the extract_shard rule
    when it is not an audio file of the expected layout."""
    with AudioReader(path) as audio:
        kept, pooled, silent = [], [], []
        for j, vid in enumerate(audio.video_ids):
            if not audio.has_audio[j] or audio.offsets[j + 1] == audio.offsets[j]:
                silent.append(vid)
                continue
            kept.append(vid)
            pooled.append(pool_rows(audio.rows(j)))
        n_mels = audio.n_mels
    names = pooled_feature_names(n_mels)
    table = pd.DataFrame(
        np.array(pooled).reshape(len(kept), len(names)),
        index=pd.Index(kept, name="video_id"),
        columns=list(names),
    )
    return table, silent


def read_audio_features(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The pooled audio features of all shards (index video_id); videos without audio,
    shard by shard, are logged and left out."""
    parts = []
    n_silent = 0
    for path in paths:
        table, silent = pool_shard(path)
        parts.append((path, table))
        n_silent += len(silent)
        if silent:
            shown = ", ".join(silent[:5]) + (" ..." if len(silent) > 5 else "")
            log.info("%s: %d videos without audio get no prediction: %s", path, len(silent), shown)
    features = stack_shards(parts)
    log.info(
        "audio features: %d videos with audio, %d without, %d features per video",
        len(features),
        n_silent,
        features.shape[1],
    )
    return features
