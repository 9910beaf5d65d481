"""Running the repository's workflow from a test: paths, tools, config files, Snakemake."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script from the running venv (snakemake, ruff, snakefmt)."""
    candidate = BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def write_config(path: Path, config: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(
    workdir: Path,
    configfile: Path | list[Path],
    *args: str,
    timeout: int = 900,
    env: dict | None = None,
    own_session: bool = False,
    prelude=None,
):
    """Run the repository's workflow in ``workdir`` (results/ lands there); ``configfile``
    may be a list, later files overriding earlier ones; ``env`` adds environment variables;
    ``own_session`` gives it a process group of its own; ``prelude`` (a module-level
    function) runs in Snakemake's process before it starts."""
    from support.snakemake_cli import run_snakemake_cli

    configfiles = configfile if isinstance(configfile, list) else [configfile]
    argv = [
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *map(str, configfiles),
        "--cores",
        "2",
        *args,
    ]
    # Snakemake's own main in a child forked from a process that imported it once
    # (support/snakemake_cli.py): the same command line without the 2.5-s import per call
    return run_snakemake_cli(argv, {**os.environ, **(env or {})}, timeout, own_session, prelude)


def tiny_models(config: dict, epochs: int = 1, threads: int = 1) -> dict:
    """Models small enough for a workflow test: a VGG16 / 16 at 32x32, few resamples;
    ``threads`` per PyTorch job and CPU analysis."""
    config["models"]["visual"].update(width_divisor=16, epochs=epochs)
    # One thread per job by default, so that two run side by side on the tests' 2 cores:
    # at these sizes a job is mostly start-up (importing torch alone takes ~3.6 s), and
    # with 2 threads each it held both cores, running the tiny demo's jobs one at a time
    # (0.69x the wall time with 1: bench/README.md, "Training threads"). Thread counts are
    # run settings (no rerun; the reruns test checks it), though torch's sums, and so the
    # last bits, depend on them.
    config["train"]["threads"] = threads
    config["analysis"]["threads"] = threads
    for model in ("img", "face", "img_cam", "face_cam"):
        # per model too: config.yaml's own per-model values (img's epochs) win over visual
        config["models"][model].update(input_size=32, epochs=epochs)
    config["evaluation"]["n_boot"] = 200
    config["analysis"]["au_emergence"].update(
        n_permutations=20, cluster_permutations=50, cluster_null_draws=5
    )
    return config


def tiny_demo_config(threads: int = 1) -> dict:
    """The tiny demo: 5 one-second clips, 4 frames each, the four CNNs at 32 px, 2 epochs,
    ``threads`` per PyTorch job (:func:`tiny_models`)."""
    config = default_config()
    config["dataset"]["name"] = "tiny"
    config["demo"].update(n_videos=5, n_identities=5, duration_s=1.0, width=192, height=108)
    config["extract"].update(frame_width=192, frame_height=108, frames_per_video=4)
    config["activations"]["batch_size"] = 8  # several batches, so a kill can fall between
    return tiny_models(config, epochs=2, threads=threads)


# Not compared between runs: per-job logs and timings, training checkpoints (their history
# holds timings too), and the report a test may have built in the reference folder.
NOT_COMPARED = {"logs", "benchmarks", "checkpoints", "report.html"}
TIMING_COLUMNS = ["seconds", "images_per_s"]


def output_differences(a: Path, b: Path) -> list[str]:
    """The outputs (results/ and generated resources/) that differ between two work folders:
    missing on one side, or different bytes; training logs by value without their timing
    columns. Every other output format of the workflow is byte-reproducible."""
    import pandas as pd

    def outputs(root: Path) -> set[Path]:
        return {
            p.relative_to(root)
            for top in ("results", "resources")
            for p in (root / top).rglob("*")
            if p.is_file() and not NOT_COMPARED & set(p.relative_to(root).parts)
        }

    mine, theirs = outputs(a), outputs(b)
    differ = sorted(str(p) + " (missing on one side)" for p in mine ^ theirs)
    for rel in sorted(mine & theirs):
        if rel.name == "training_log.tsv":
            x, y = (pd.read_csv(r / rel, sep="\t").drop(columns=TIMING_COLUMNS) for r in (a, b))
            same = x.equals(y)
        else:
            same = (a / rel).read_bytes() == (b / rel).read_bytes()
        if not same:
            differ.append(str(rel))
    return differ


def finished_rules(run: subprocess.CompletedProcess) -> set[str]:
    """The rules of the jobs a Snakemake run finished (from its log on stderr)."""
    return set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", run.stderr))


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Jobs per rule (and 'total') from the 'Job stats' table of a dry run."""
    return {
        line.split()[0]: int(line.split()[1])
        for line in dry_run_output.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
