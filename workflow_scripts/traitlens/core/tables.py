"""Reading the workflow's own TSV intermediates, with a clear message when one is bad.

The TSV counterpart of h5checks: a missing, empty, cut-short or foreign table names
itself, what is wrong and the rule that rebuilds it, instead of a pandas traceback or,
worse, a silently shorter table. Every table the workflow writes ends its last row with
a newline, so a file cut inside a row is told apart from a complete one; a cut that falls
exactly between two rows cannot be seen from the table alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from traitlens.core.errors import UserError
from traitlens.core.h5checks import missing_or_empty, rebuild_hint


def file_problem(path: Path) -> str | None:
    """What makes ``path`` unreadable as a complete table before parsing it, or None."""
    problem = missing_or_empty(path)
    if problem is not None:
        return problem
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            fh.seek(size - 1)
            last = fh.read(1)
    except OSError as err:  # no permission, or gone since the check
        return f"it cannot be read ({err})"
    if last != b"\n":
        return f"the file is truncated ({size} bytes, its last row cut short)"
    return None


def read_table(
    path: str | Path,
    kind: str,
    rule: str,
    required: Sequence[str] = (),
    dtype: Mapping[str, object] | type | None = None,
    keep_default_na: bool = True,
) -> pd.DataFrame:
    """The TSV ``path`` (header row first); UserError naming the file, the problem and
    how ``rule`` rebuilds it when it is missing, cut short, unparsable or lacks one of the
    ``required`` columns."""
    path = Path(path)
    problem = file_problem(path)
    if problem is None:
        try:
            table = pd.read_csv(path, sep="\t", dtype=dtype, keep_default_na=keep_default_na)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            problem = f"it does not parse as TSV ({err})"
        except OSError as err:
            problem = f"it cannot be read ({err})"
    if problem is None:
        missing = [c for c in required if c not in table]
        if missing:
            problem = f"missing columns {missing}"
    if problem is not None:
        raise UserError(
            f"{path}: not a readable {kind} table: {problem}; {rebuild_hint(path, rule)}"
        )
    return table
