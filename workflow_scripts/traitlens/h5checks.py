"""Opening the workflow's own HDF5 intermediates with a clear message when one is bad.

A truncated or foreign file names itself and the rule that rebuilds it, instead of
surfacing as an h5py traceback several stages later.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py

from traitlens.errors import UserError


def rebuild_hint(path: str | Path, rule: str) -> str:
    return f"delete {path} and rerun snakemake so that the {rule} rule rebuilds it"


def open_checked(path: str | Path, kind: str, rule: str, required: Iterable[str]) -> h5py.File:
    """Open ``path`` for reading; UserError (file, problem, rule) when it is unreadable
    or lacks one of the ``required`` datasets. The caller closes the file."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise UserError(
            f"{path}: not a readable HDF5 {kind} file ({err}); {rebuild_hint(path, rule)}"
        ) from None
    missing = [name for name in required if name not in f]
    if missing:
        f.close()
        raise UserError(f"{path}: missing dataset(s) {missing}; {rebuild_hint(path, rule)}")
    return f


def as_str(value: object) -> str:
    """An HDF5 string element (h5py returns variable-length UTF-8 as bytes)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
