"""Test tiers, as a pytest plugin (``pytest_plugins`` in tests/conftest.py).

Every test runs in exactly one tier. One pytest session runs them fastest first, in this
order, and once a tier has a failure the tests of the later tiers are skipped, so the
first failure shows in about a minute. ``bash setup.sh test`` runs every tier in one
session (``--require-tiers``: each tier must hold a test), which also lets the workflow and
cluster tiers share the session's reference run of the tiny demo.

- ``unit``: in-process, no subprocess; the default for a test that names no tier.
- ``media``: spawns ffmpeg/ffprobe, a Python interpreter or another tool, runs mediapipe,
  or trains a torch model for more than a moment.
- ``workflow``: runs Snakemake (a dry run or lint counts).
- ``cluster``: runs the workflow on a local one-node SLURM cluster.
- ``fullsize``: config/first_impressions.yaml end to end on full-size clips. Opt-in: it
  runs only when ``-m`` names it (``bash setup.sh test -m fullsize``), as it alone takes
  several minutes of the suite's 15.

A unit test that starts a process fails, naming what it started, so the tier stays honest:
the guard covers the test's fixture set-up (whatever their scope), the test itself and its
tear-down. One exception: a process a library starts while it is being imported (a
platform probe such as ``lscpu``, ``uname`` or ``ldconfig``) is not the test's work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

TIERS = {
    "unit": "in-process, spawns no process (the default tier)",
    "media": "spawns ffmpeg/ffprobe or another process, runs mediapipe, or trains torch models",
    "workflow": "runs Snakemake on tiny generated data (slow)",
    "cluster": "runs the workflow on a one-node SLURM cluster on localhost (slowest)",
    "fullsize": "runs config/first_impressions.yaml on full-size clips (minutes; opt-in)",
}
# Tiers a plain run leaves out: they run only when -m names them (bash setup.sh test -m
# fullsize). The full-size run alone takes longer than the suite's 15-minute budget allows.
OPT_IN_TIERS = ("fullsize",)
DEFAULT_TIER = "unit"
MESSAGE = "unit tests spawn no process: mark it media (it called {what})"


def tiers_of(item: pytest.Item) -> list[str]:
    """The tier markers a test carries, from itself, its class and its module."""
    return sorted({m.name for m in item.iter_markers() if m.name in TIERS})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-tiers",
        action="store_true",
        help="fail when a test tier selects no test (bash setup.sh test runs with it)",
    )


def tier_of(item: pytest.Item) -> str:
    return next(m.name for m in item.iter_markers() if m.name in TIERS)


class TierRun:
    """Per tier: the outcomes and seconds so far, and whether a test of it failed."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.failed: set[str] = set()

    def earlier_failure(self, tier: str) -> str | None:
        order = list(TIERS)
        return next((t for t in order[: order.index(tier)] if t in self.failed), None)


RUN_KEY = pytest.StashKey[TierRun]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUN_KEY] = TierRun()
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    for name, description in TIERS.items():
        if name not in declared:  # pyproject.toml declares them; a bare pytester run does not
            config.addinivalue_line("markers", f"{name}: {description}")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    doubles = []
    for item in items:
        tiers = tiers_of(item)
        if not tiers:
            item.add_marker(DEFAULT_TIER)
        elif len(tiers) > 1:
            doubles.append(f"  {item.nodeid}: {', '.join(tiers)}")
    if doubles:
        raise pytest.UsageError(
            "a test belongs to exactly one tier (" + ", ".join(TIERS) + "); these carry "
            "several (remove all but one marker):\n" + "\n".join(doubles)
        )
    order = list(TIERS)
    items.sort(key=lambda item: order.index(tier_of(item)))  # stable: file order within a tier
    asked = config.getoption("markexpr", "") or ""
    left_out = [i for i in items if tier_of(i) in OPT_IN_TIERS and tier_of(i) not in asked]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [i for i in items if i not in left_out]


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.getoption("require_tiers"):
        return
    present = {tier_of(item) for item in session.items}
    empty = [tier for tier in TIERS if tier not in present and tier not in OPT_IN_TIERS]
    if empty:
        raise pytest.UsageError(f"test tier(s) with no test: {', '.join(empty)}")


IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def _while_importing() -> bool:
    """Whether the spawn comes from a module being imported: libraries probe the platform
    once at import (numpy.testing runs ``lscpu``, ``ctypes.util.find_library`` runs
    ``ldconfig``, platform.uname runs ``uname``), which is not the test's own work and
    would otherwise fail whichever unit test happens to import them first."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename in IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


@contextmanager
def no_spawn(spawned: list[str]) -> Iterator[None]:
    """Make every way to start a process fail the running test; what was tried is appended
    to ``spawned``, so an error that the code under test swallows still fails the test."""
    popen_init, system, fork = subprocess.Popen.__init__, os.system, os.fork
    spawn, spawnp = os.posix_spawn, os.posix_spawnp

    def refuse(what: str):
        spawned.append(what)
        pytest.fail(MESSAGE.format(what=what), pytrace=True)

    def guarded_popen_init(self, args, *a, **k):
        if _while_importing():
            return popen_init(self, args, *a, **k)
        shown = args[0] if isinstance(args, list | tuple) and args else args
        refuse(f"subprocess.Popen({shown!r})")

    subprocess.Popen.__init__ = guarded_popen_init
    os.system = lambda command: refuse(f"os.system({command!r})")
    os.posix_spawn = lambda path, *a, **k: refuse(f"os.posix_spawn({path!r})")
    os.posix_spawnp = lambda path, *a, **k: refuse(f"os.posix_spawnp({path!r})")
    os.fork = lambda: refuse("os.fork()")
    try:
        yield
    finally:
        subprocess.Popen.__init__, os.system, os.fork = popen_init, system, fork
        os.posix_spawn, os.posix_spawnp = spawn, spawnp


def _guarded(item: pytest.Item):
    if item.get_closest_marker(DEFAULT_TIER) is None:
        return (yield)
    spawned: list[str] = []
    with no_spawn(spawned):
        result = yield
    if spawned:  # the code under test caught the failure and went on
        pytest.fail(MESSAGE.format(what=spawned[0]), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    run, tier = item.config.stash[RUN_KEY], tier_of(item)
    run.started.setdefault(tier, time.monotonic())
    failed = run.earlier_failure(tier)
    if failed:
        pytest.skip(f"the {failed} tier failed: the {tier} tier does not run")
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    run, tier = item.config.stash[RUN_KEY], tier_of(item)
    run.ended[tier] = time.monotonic()
    if report.failed:
        run.failed.add(tier)
    if report.when == "call" or (report.when == "setup" and not report.passed):
        outcome = "error" if report.when == "setup" and report.failed else report.outcome
        run.outcomes[tier][outcome] += 1
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = config.stash[RUN_KEY]
    if not run.outcomes:
        return
    terminalreporter.section("test tiers")
    for tier in TIERS:
        if tier not in run.outcomes:
            continue
        counts = ", ".join(f"{n} {what}" for what, n in sorted(run.outcomes[tier].items()))
        seconds = run.ended.get(tier, 0.0) - run.started.get(tier, 0.0)
        terminalreporter.write_line(f"{tier:<9} {seconds:7.1f} s  {counts}")
