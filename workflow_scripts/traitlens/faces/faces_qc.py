"""Per-video face QC: how many of a video's frames have a usable face, and why not.

One TSV per shard (``qc/faces/<shard>.tsv``); summarise_qc turns them into the
``n_faces`` column of ``qc/videos.tsv`` with :func:`face_counts`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import UserError
from traitlens.core.tables import read_table

FACE_QC_COLUMNS = ["video_id", "n_frames", "n_faces", "multiple_faces_seen", "reason"]


def reason_summary(reasons: Iterable[str]) -> str:
    """'mesh failed: 1; no face: 2' (counts of the non-empty reasons), '' when none."""
    counts = Counter(r for r in reasons if r)
    return "; ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))


def video_qc_row(
    video_id: str, success: np.ndarray, n_faces_seen: np.ndarray, reasons: Sequence[str]
) -> dict[str, object]:
    """One video's QC row from its frames' face results."""
    n = len(success)
    return {
        "video_id": video_id,
        "n_frames": n,
        "n_faces": int(np.count_nonzero(success)),
        "multiple_faces_seen": str(bool(np.any(np.asarray(n_faces_seen) > 1))).lower(),
        "reason": reason_summary(reasons) if n else "no frames",
    }


def write_face_qc(path: str | Path, rows: Iterable[dict[str, object]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, FACE_QC_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def read_face_qc(path: str | Path) -> pd.DataFrame:
    """A per-shard face QC table; UserError naming the file when it is not one."""
    return read_table(
        path,
        "face QC",
        "detect_faces",
        FACE_QC_COLUMNS,
        dtype={"video_id": str, "reason": str},
        keep_default_na=False,
    )


def face_counts(tables: Iterable[pd.DataFrame]) -> dict[str, int]:
    """{video_id: frames with a usable face} over the per-shard face QC tables.

    A video listed twice (two shards claiming it) is a broken shard assignment: error.
    """
    counts: dict[str, int] = {}
    for table in tables:
        for video_id, n_faces in zip(table["video_id"], table["n_faces"], strict=True):
            if video_id in counts:
                raise UserError(f"face QC: video {video_id} appears in more than one shard")
            counts[str(video_id)] = int(n_faces)
    return counts
