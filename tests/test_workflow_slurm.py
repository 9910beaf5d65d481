"""The tiny demo submitted to a real one-node SLURM cluster through the SLURM executor and
the project's profiles/slurm, against the same workflow run locally: identical outputs."""

from __future__ import annotations

import os
import subprocess

import pytest
from slurm_cluster import PARTITION, Cluster, missing_tools

from conftest import REPO, default_config, run_snakemake, tiny_models, write_config

pytestmark = pytest.mark.workflow

COMPARED = (
    "manifest.tsv",
    "qc/videos.tsv",
    "tables/accuracy.tsv",
    "tables/comparisons.tsv",
    "models/img/predictions.tsv",
    "models/face/frame_predictions.tsv",
    "models/audio/predictions.tsv",
    "models/aus/predictions.tsv",
    "tables/cam_face_overlap.tsv",
    "tables/detectors.tsv",
    "tables/au_emergence.tsv",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.fail(f"SLURM tools missing: {missing}; `bash setup.sh test` installs them")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root")
    with Cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def tiny_config(path):
    config = default_config()
    config["dataset"]["name"] = "tiny"
    config["demo"].update(n_videos=5, n_identities=5, duration_s=1.0, fps=10, width=192, height=108)
    config["extract"].update(frame_width=192, frame_height=108, frames_per_video=3)
    tiny_models(config)
    config["activations"]["layers"] = ["conv5_3"]  # one layer: fewer jobs through sbatch
    return write_config(path, config)


def test_slurm_run_matches_a_local_run(cluster, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    remote.mkdir()
    result = run_snakemake(local, tiny_config(local / "tiny.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]

    gpu_rules = "train_visual", "predict_visual", "dump_activations", "compute_cam"
    result = run_snakemake(
        remote,
        tiny_config(remote / "tiny.yaml"),
        "--executor", "slurm",
        "--workflow-profile", str(REPO / "profiles/slurm"),
        "--jobs", "4",
        "--default-resources", f"slurm_partition={PARTITION}", "mem_mb=1000", "runtime=30",
        "--set-resources", *(f"{r}:slurm_partition={PARTITION}" for r in gpu_rules),
        *(f"{r}:mem_mb=2000" for r in gpu_rules),
        "--set-threads", *(f"{r}=2" for r in gpu_rules),
        "--slurm-no-account",
        "--slurm-status-command", "squeue",  # no accounting database: sacct cannot answer
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2",
        "--latency-wait", "5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:] + cluster.log_tail()

    names = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(names) >= 8, names  # each job (a group counts once) went through sbatch
    for name in COMPARED:
        a = (local / "results/tiny" / name).read_bytes()
        b = (remote / "results/tiny" / name).read_bytes()
        assert a == b, f"{name} differs between the local and the SLURM run"
    for frames in sorted((local / "results/tiny/frames").glob("*.h5")):
        assert frames.read_bytes() == (remote / "results/tiny/frames" / frames.name).read_bytes()
