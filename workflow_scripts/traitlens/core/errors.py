"""User-facing errors: a clear message naming the file and the problem, never a traceback;
and ``run_rule``, which every entry script (``workflow_scripts/<rule>.py``) calls."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class UserError(Exception):
    """An expected problem with the user's input or config.

    The message must say which file (or key) is wrong, what is wrong and what to do.
    """


class Job(Protocol):
    """What a rule function reads: the ``snakemake`` object Snakemake gives a script.

    ``params`` hold the settings that change the rule's outputs (a change re-runs it);
    ``config`` is the whole config, for settings that do not (devices, loader workers,
    inference batch sizes); ``threads`` are the cores the job was given.
    """

    input: Any
    output: Any
    params: Any
    wildcards: Any
    threads: int
    log: Any
    config: Mapping


def run_rule(rule: Callable[[Job], None], job: Job) -> None:
    """Run a rule function on Snakemake's job: log to the job's log file and stderr, and turn
    a UserError into a clean message and exit 1.

    Unexpected exceptions still raise (they are bugs and need the traceback).
    """
    log = list(getattr(job, "log", None) or [])
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log:
        handlers.append(logging.FileHandler(log[0], mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=handlers,
        force=True,
    )
    try:
        with _main_script_hidden():
            rule(job)
    except UserError as err:
        logging.getLogger("traitlens").error("%s", err)
        sys.exit(1)


@contextlib.contextmanager
def _main_script_hidden():
    """Keep a process pool's spawned workers from re-running the entry script.

    A spawned worker first runs the parent's ``__main__`` file; here that is the rule's
    entry script, which needs the ``snakemake`` object only the job's own process has
    (Snakemake runs a copy with it prepended but names the original as ``__main__``).
    The workers need nothing from it (their functions live in the package), so while the
    rule runs ``__main__`` names no file to run.
    """
    main = sys.modules.get("__main__")
    missing = object()
    path = main.__dict__.pop("__file__", missing) if main is not None else missing
    try:
        yield
    finally:
        if path is not missing:
            main.__file__ = path
