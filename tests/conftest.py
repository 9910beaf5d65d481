"""Shared test set-up: the repository root and the venv's tools."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script from the running venv (snakemake, ruff, snakefmt)."""
    candidate = BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH")
    return found


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _no_user_site(monkeypatch):
    # Keep matplotlib and friends from writing caches into the user's home during tests.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")


# The demo settings the demo-plan tests pin (the config.yaml defaults when written);
# pinned here so a change of the user-facing default does not silently move them.
DEMO_TEST_CONFIG = {
    "seed": 7,
    "n_videos": 60,
    "n_identities": 12,
    "duration_s": 4.0,
    "fps": 30,
    "width": 384,
    "height": 216,
    "noise_sd": 0.04,
    "ground_truth": "resources/demo/ground_truth",
}


def default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def write_config(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, configfile: Path, *args: str, timeout: int = 900):
    """Run the repository's workflow in ``workdir`` (results/ lands there)."""
    import subprocess

    return subprocess.run(
        [
            tool("snakemake"),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(configfile),
            "--cores",
            "2",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny_models(config: dict, epochs: int = 1) -> dict:
    """Models small enough for a workflow test: a VGG16 / 16 at 32x32, few resamples."""
    config["models"]["visual"].update(width_divisor=16, epochs=epochs)
    for model in ("img", "face", "img_cam", "face_cam"):
        config["models"][model]["input_size"] = 32
    config["evaluation"]["n_boot"] = 200
    config["analysis"]["au_emergence"]["n_permutations"] = 20
    return config


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Jobs per rule (and 'total') from the 'Job stats' table of a dry run."""
    return {
        line.split()[0]: int(line.split()[1])
        for line in dry_run_output.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (tests run beside each other on 2 cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
