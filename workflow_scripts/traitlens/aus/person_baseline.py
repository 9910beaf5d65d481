"""The person baseline (config ``aus.baseline: person``): each person's neutral AU level,
estimated over all of the person's frames in every shard, subtracted from their frames.

The mesh inversion reads each face's rest shape as a small constant AU offset, and that
offset differs between people: it is what keeps AU01's r across the demo's people at
0.60 while its r within each person is 0.83 (docs/validation.md). OpenFace removes such
offsets per video; here the unit is the person (the manifest's ``group``: the demo's
person, First Impressions' YouTube id), so a clip's own AU level, which carries the trait
signal, is kept. A person's clips lie in several shards, so this runs once over every
shard's table after ``estimate_aus``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from traitlens.aus.estimate_aus import (
    AU_COLUMNS,
    baseline_label,
    subtract_baseline,
    video_means,
    with_provenance,
)

log = logging.getLogger("traitlens.aus.person_baseline")


def person_labels(video_ids: pd.Series, groups: Mapping[str, str], manifest: str) -> np.ndarray:
    """Each row's person: the manifest's group, or for a video the manifest does not list
    (one without labels, which the workflow extracts but leaves out of it) the video
    itself, so that its baseline is its own."""
    missing = sorted(set(video_ids) - set(groups))
    if missing:
        log.warning(
            "%d video(s) of the AU tables are not in %s (no labels: %s): each is its own "
            "person for the baseline",
            len(missing),
            manifest,
            ", ".join(missing[:5]),
        )
    return video_ids.map(lambda v: groups.get(v, v)).to_numpy()


def calibrate_frames(
    tables: Sequence[pd.DataFrame], groups: Mapping[str, str], percentile: float, manifest: str
) -> list[pd.DataFrame]:
    """The shards' frame tables with each person's ``percentile`` subtracted per AU over
    all of the person's successful frames (clipped at 0), in the same order and layout;
    ``au_baseline`` becomes ``person_p<percentile>``."""
    if not tables:
        return []
    both = pd.concat(tables, ignore_index=True)
    persons = person_labels(both["video_id"], groups, manifest)
    values = both[list(AU_COLUMNS)].to_numpy(dtype=np.float64)
    values = np.where(both["success"].to_numpy()[:, None], values, np.nan)
    calibrated = subtract_baseline(values, persons, percentile)
    alone = _single_video_persons(both["video_id"], persons)
    if alone:
        log.warning(
            "%d person(s) with one video only (no group known for them in %s): their "
            "baseline is their video's own, which also removes that video's AU level",
            alone,
            manifest,
        )
    out, start = [], 0
    for table in tables:
        part = table.copy()
        part[list(AU_COLUMNS)] = calibrated[start : start + len(table)]
        if "au_baseline" in part.columns:
            part["au_baseline"] = baseline_label("person", percentile)
        out.append(part)
        start += len(table)
    return out


def calibrated_videos(frames: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """The per-video table of calibrated ``frames``, with the rows (every video of the
    shard, those without a usable frame too) and provenance of the uncalibrated ``videos``."""
    means = video_means(frames, tuple(videos["video_id"]))
    provenance = {
        name: frames[name].iloc[0] if name in frames.columns and len(frames) else videos[name]
        for name in videos.columns
        if name not in means.columns
    }
    return with_provenance(means, provenance, after="n_frames")


def _single_video_persons(video_ids: pd.Series, persons: np.ndarray) -> int:
    per_person = pd.Series(video_ids.to_numpy()).groupby(persons).nunique()
    return int((per_person == 1).sum())
