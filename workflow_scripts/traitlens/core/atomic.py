"""Atomic output: write under a temporary name in the same folder, rename on success.

A job killed mid-write leaves only a ``.tmp-*`` file behind, never a truncated output
under the final name, so a rerun cannot mistake it for a finished result.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def temp_next_to(final: str | os.PathLike[str]) -> Path:
    """A fresh, empty temporary file in ``final``'s folder, named ``.tmp-<name>.*``.

    Temporary files a killed earlier attempt left for the same output are removed first
    (a killed shard or dump would otherwise leave gigabytes behind on every retry):
    Snakemake runs one job per output at a time. The exception is a cluster job still
    running after the Snakemake that submitted it was killed; a rerun then makes that
    job fail at its rename, which Snakemake already treats as a failed job.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp's names: the prefix, then 8 random characters
    for stale in final.parent.glob(f".tmp-{glob.escape(final.name)}.????????"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{final.name}.", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the output the mode a plain open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    return tmp


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on clean exit rename it to ``final``."""
    tmp = temp_next_to(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(final: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_figure(fig, final: str | os.PathLike[str], dpi: float | None = None) -> None:
    """Save a matplotlib figure to ``final`` as PNG atomically, then close it.

    ``dpi`` None keeps matplotlib's default (the figure's own dpi).
    """
    import matplotlib.pyplot as plt

    with atomic_path(final) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def write_tsv(table, final: str | os.PathLike[str], float_format: str = "%.6g") -> None:
    """A pandas table as TSV, atomically: empty cells for NaN, booleans as true/false
    (how every table of the workflow writes them, so readers parse one spelling)."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == bool:
            out[column] = out[column].map({True: "true", False: "false"})
    with atomic_path(final) as tmp:
        out.to_csv(tmp, sep="\t", index=False, na_rep="", float_format=float_format)
