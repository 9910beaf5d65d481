"""User-facing errors: a clear message naming the file and the problem, never a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable


class UserError(Exception):
    """An expected problem with the user's input or config.

    The message must say which file (or key) is wrong, what is wrong and what to do.
    """


def run_entry(main: Callable[[], None], log_path: str | None = None) -> None:
    """Run an entry script's ``main``; turn a UserError into a clean message and exit 1.

    Unexpected exceptions still raise (they are bugs and need the traceback).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        main()
    except UserError as err:
        logging.getLogger("traitlens").error("%s", err)
        sys.exit(1)
