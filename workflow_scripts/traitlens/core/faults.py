"""Kill points: a real SIGKILL at a named place half way through a stage.

The kill-and-rerun tests (tests/test_workflow_kill.py) set ``TRAITLENS_KILL_AT=<point>``
and start Snakemake in a process group of its own. The job that reaches that point kills
its whole process group - itself, Snakemake and every other running job - with SIGKILL,
as a node losing power or a scheduler's ``kill -9`` would, but at a place where the stage
is known to be half done (a shard file half written, a checkpoint saved and training not
finished). Timing an outside kill cannot promise that: most demo jobs last a second.

Unset (always, outside those tests) a kill point does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "TRAITLENS_KILL_AT"


def kill_point(name: str) -> None:
    """SIGKILL this process group when ``TRAITLENS_KILL_AT`` names ``name``."""
    if os.environ.get(ENV) == name:
        os.killpg(os.getpgrp(), signal.SIGKILL)
