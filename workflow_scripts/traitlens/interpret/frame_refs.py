"""Frames that activation dumps and CAM files refer to: by (shard file basename, row).

Matches the recorded basenames with the shard files a rule is given, and reads those
rows' pixels through a reader with ``read(files, rows)`` (models.pixel_reader.PixelReader).
numpy only, so the analyses of dumps and CAM files run without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from traitlens.core.errors import UserError
from traitlens.core.h5checks import rebuild_hint


def shard_lookup(
    names, paths: Sequence[str | Path], what: str, source: str | Path, rule: str
) -> dict[str, int]:
    """{shard file basename: position in ``paths``} for the shards a CAM file or an
    activation dump (``source``, written by ``rule``) names; UserError when one is not
    among ``paths`` (the file was made from other shards: it is stale)."""
    number = {Path(p).name: i for i, p in enumerate(paths)}
    missing = sorted(set(map(str, names)) - set(number))
    if missing:
        raise UserError(
            f"{source}: its frames come from {what} file(s) {missing[:5]} that are not "
            f"among the {len(number)} {what} files given to the rule. Either it was made "
            f"from other shards and is stale ({rebuild_hint(source, rule)}), or the rule "
            "was given the wrong files"
        )
    return number


def read_by_shard_row(reader, lookup: dict[str, int], names, rows: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, 3): the pixels of (shard basename, row) pairs, as CAM files and
    activation dumps record their frames."""
    files = np.array([lookup[str(s)] for s in names], dtype=np.int64)
    return reader.read(files, np.asarray(rows, dtype=np.int64))
