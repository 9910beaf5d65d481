"""Shared fixtures and the test tiers (tests/support/tiers.py). Helpers that tests import
live in the ``support`` package (tests/support/); tests never import one another."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from support.workflow import REPO, run_snakemake, tiny_demo_config, write_config

pytest_plugins = ["pytester", "support.tiers"]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _no_user_site(monkeypatch):
    # Keep matplotlib and friends from writing caches into the user's home during tests.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> tuple[Path, Path]:
    """(work folder, config file) of one uninterrupted local run of the tiny demo, shared by
    the tests that inspect it and those that compare another run with it."""
    workdir = tmp_path_factory.mktemp("tiny_demo")
    configfile = write_config(workdir / "tiny.yaml", tiny_demo_config())
    result = run_snakemake(workdir, configfile)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, configfile


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tests run beside each other on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def restore_logging():
    """run_rule replaces the root logger's handlers (a log file, the test's stderr): put
    them back, so later tests log as before."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level
