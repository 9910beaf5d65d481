"""The QC table: every video's extraction status, and the run's failure budget."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from traitlens.core.errors import UserError

# What extraction records per video (one TSV per shard) ...
SHARD_QC_COLUMNS = [
    "video_id",
    "status",
    "reason",
    "duration_s",
    "fps",
    "width",
    "height",
    "has_audio",
    "n_frames",
]
# ... and the contract's qc/videos.tsv, which adds what the face stage counts.
QC_COLUMNS = [*SHARD_QC_COLUMNS, "n_faces"]


def combine_shard_qc(
    tables: list[pd.DataFrame], n_faces: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """Concatenate the per-shard QC tables into the contract's columns, sorted by id.

    ``n_faces`` (video id -> frames with a usable face, from the face stage) fills that
    column; a video the face stage never saw (it failed extraction) gets 0.
    """
    combined = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    for column in QC_COLUMNS:
        if column not in combined:
            combined[column] = pd.NA
    if n_faces is not None:
        combined["n_faces"] = combined["video_id"].map(n_faces).fillna(0).astype(int)
    return combined[QC_COLUMNS].sort_values("video_id", kind="stable").reset_index(drop=True)


def check_failure_budget(qc: pd.DataFrame, max_failed_fraction: float) -> str:
    """A one-line summary; UserError listing every failed video when over the budget."""
    n = len(qc)
    failed = qc[qc["status"] != "ok"]
    fraction = len(failed) / n if n else 0.0
    summary = f"{n - len(failed)} of {n} videos extracted, {len(failed)} failed ({fraction:.1%})"
    if fraction > max_failed_fraction:
        listing = "\n  ".join(f"{r.video_id}: {r.reason}" for r in failed.itertuples())
        raise UserError(
            f"{summary}, more than extract.max_failed_fraction = {max_failed_fraction:.1%}. "
            f"Failed videos:\n  {listing}\nFix or remove these files, or raise "
            "extract.max_failed_fraction to go on without them."
        )
    return summary
