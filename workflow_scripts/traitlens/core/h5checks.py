"""Opening the workflow's own HDF5 intermediates with a clear message when one is bad.

A truncated, empty, missing or foreign file names itself, says what is wrong with it
and which rule rebuilds it (and how), instead of surfacing as an h5py traceback several
stages later. Every reader of an intermediate opens it through ``open_checked``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from traitlens.core.errors import UserError


def rebuild_hint(path: str | Path, rule: str) -> str:
    return (
        f"delete {path} if it is there and rerun snakemake so that the {rule} rule "
        f"rebuilds it (or end the snakemake command with --forcerun {path})"
    )


def missing_or_empty(path: Path) -> str | None:
    """The problems any intermediate can have before its format is looked at, or None."""
    if not path.exists():
        return "the file does not exist"
    if path.is_dir():
        return "a folder, not a file"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    return None


def open_problem(path: Path, err: OSError) -> str:
    """What is wrong with a file h5py could not open, in the user's words."""
    problem = missing_or_empty(path)
    if problem is not None:
        return problem
    size = path.stat().st_size
    # HDF5 stores the file's length in its superblock and refuses a shorter file
    stored = re.search(r"stored_eof = (\d+)", str(err))
    if "truncated file" in str(err):
        of = f" of the {int(stored.group(1))} it was written with" if stored else ""
        return f"the file is truncated ({size} bytes on disk{of})"
    if "file signature not found" in str(err):
        return f"not an HDF5 file ({size} bytes without the HDF5 signature)"
    return f"h5py cannot open it ({err})"


def open_checked(
    path: str | Path, kind: str, rule: str, required: Iterable[str], **options
) -> h5py.File:
    """Open ``path`` for reading (``options`` go to h5py.File); UserError (file, problem,
    rule and how to rebuild) when it is unreadable or lacks one of the ``required``
    datasets. The caller closes the file."""
    path = Path(path)
    try:
        f = h5py.File(path, "r", **options)
    except OSError as err:  # FileNotFoundError and IsADirectoryError included
        problem = open_problem(path, err)
        raise UserError(
            f"{path}: not a readable HDF5 {kind} file: {problem}; {rebuild_hint(path, rule)}"
        ) from None
    missing = [name for name in required if name not in f]
    if missing:
        f.close()
        raise UserError(
            f"{path}: missing dataset(s) {missing} of a {kind} file; {rebuild_hint(path, rule)}"
        )
    return f


def string_dataset(group: h5py.Group, name: str, values: Sequence[str]) -> None:
    """A variable-length UTF-8 string dataset, as every intermediate stores its ids."""
    group.create_dataset(
        name, data=np.array(values, dtype=object), dtype=h5py.string_dtype(), track_times=False
    )


def as_str(value: object) -> str:
    """An HDF5 string element (h5py returns variable-length UTF-8 as bytes)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
