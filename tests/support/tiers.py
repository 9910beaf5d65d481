"""Test tiers, as a pytest plugin (``pytest_plugins`` in tests/conftest.py).

Every test runs in exactly one tier, fastest first (``bash setup.sh test`` runs them in
this order and stops at the first that fails):

- ``unit``: in-process, no subprocess; the default for a test that names no tier.
- ``media``: spawns ffmpeg/ffprobe, a Python interpreter or another tool, runs mediapipe,
  or trains a torch model for more than a moment.
- ``workflow``: runs Snakemake (a dry run or lint counts).
- ``cluster``: runs the workflow on a local one-node SLURM cluster.

A unit test that starts a process fails, naming what it started, so the tier stays honest:
the guard covers the test's fixture set-up (whatever their scope), the test itself and its
tear-down. One exception: ``ctypes.util.find_library`` runs ``ldconfig``/``gcc`` to locate
a shared library while a package is imported (mediapipe's ``sounddevice``); that is library
loading, not the test's work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

TIERS = {
    "unit": "in-process, spawns no process (the default tier)",
    "media": "spawns ffmpeg/ffprobe or another process, runs mediapipe, or trains torch models",
    "workflow": "runs Snakemake on tiny generated data (slow)",
    "cluster": "runs the workflow on a one-node SLURM cluster on localhost (slowest)",
}
DEFAULT_TIER = "unit"
MESSAGE = "unit tests spawn no process: mark it media (it called {what})"


def tiers_of(item: pytest.Item) -> list[str]:
    """The tier markers a test carries, from itself, its class and its module."""
    return sorted({m.name for m in item.iter_markers() if m.name in TIERS})


def pytest_configure(config: pytest.Config) -> None:
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


def _from_find_library() -> bool:
    frame = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            return False
        if frame.f_code.co_filename.endswith(os.path.join("ctypes", "util.py")):
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
        if _from_find_library():
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
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    return (yield from _guarded(item))
