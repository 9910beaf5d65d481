"""An AU frame table as py-feat's ``Fex``: ``aus/<shard>.fex.csv`` (rule export_fex).

py-feat users hold face results in a ``feat.Fex``, a pandas DataFrame that knows which
of its columns are AUs. Its Detectorv2 gives one row per frame: ``input`` (the file),
``frame``, the 20 AUs by py-feat's names, and empty AUs where no face was found. The
export keeps that layout: ``input`` is our video_id, ``frame`` our frame_index, then
:data:`PYFEAT_AUS` (AU45 is left out: py-feat's 20-AU network has none, ours is
usually AU43 copied for the OpenFace view, and py-feat's tools expect its 20 AUs), then
the provenance columns (lower case, so py-feat never takes them for AUs).
``feat.utils.io.read_feat`` reads the file back as a Fex whose ``.aus`` are the 20 AU
columns; :func:`to_fex` makes the same Fex in memory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from traitlens.aus.estimate_aus import FLOAT_FORMAT, PROVENANCE_COLUMNS, PYFEAT_AUS
from traitlens.core import atomic

# our key column -> py-feat's name for it
RENAMED = {"video_id": "input", "frame_index": "frame"}


def fex_table(frames: pd.DataFrame) -> pd.DataFrame:
    """An ``aus/<shard>.tsv`` table (as ``read_frame_table`` gives it) in py-feat's
    layout: input, frame, the 20 AUs (empty where no face), the provenance it has."""
    kept = [*RENAMED, *PYFEAT_AUS, *(c for c in PROVENANCE_COLUMNS if c in frames)]
    return frames[kept].rename(columns=RENAMED).reset_index(drop=True)


def to_fex(frames: pd.DataFrame):
    """The frame table as a ``feat.Fex`` (its ``.aus``: the 20 AU columns); imports py-feat."""
    from feat import Fex

    table = fex_table(frames)
    backends = table["au_backend"].unique() if "au_backend" in table else []
    return Fex(
        table,
        au_columns=list(PYFEAT_AUS),
        time_columns=["frame"],
        detector="traitlens",
        au_model=f"traitlens {backends[0]} backend" if len(backends) == 1 else None,
    )


def write_fex_csv(frames: pd.DataFrame, path: str | Path) -> None:
    """:func:`fex_table` as CSV, the format py-feat saves and ``read_feat`` reads; atomic."""
    with atomic.atomic_path(path) as tmp:
        fex_table(frames).to_csv(tmp, index=False, na_rep="", float_format=FLOAT_FORMAT)
