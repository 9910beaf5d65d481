"""The tiny demo submitted to a real one-node SLURM cluster through the SLURM executor and
the project's profiles/slurm, against the same workflow run locally (the shared tiny_demo
run): identical outputs, file for file."""

from __future__ import annotations

import os
import subprocess

import pytest

from support.slurm_cluster import PARTITION, Cluster, missing_tools, shorten_plugin_pacing
from support.workflow import REPO, output_differences, run_snakemake, tiny_demo_config, write_config

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.fail(f"SLURM tools missing: {missing}; `bash setup.sh test` installs them")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root")
    with Cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def test_slurm_run_matches_a_local_run(cluster, tiny_demo, tmp_path):
    local, _ = tiny_demo  # the same config run locally
    remote = tmp_path / "slurm"
    remote.mkdir()
    gpu_rules = "train_visual", "predict_visual", "dump_activations", "compute_cam"
    config = tiny_demo_config()
    # the profile's 8 threads replaced by the local run's: torch's sums, and so the
    # outputs' last bits, depend on the thread count
    threads = config["train"]["threads"]
    result = run_snakemake(
        remote,
        write_config(remote / "tiny.yaml", config),
        "--executor", "slurm",
        "--workflow-profile", str(REPO / "profiles/slurm"),
        "--jobs", "4",
        "--default-resources", f"slurm_partition={PARTITION}", "mem_mb=1000", "runtime=30",
        "--set-resources", *(f"{r}:slurm_partition={PARTITION}" for r in gpu_rules),
        *(f"{r}:mem_mb=2000" for r in gpu_rules),
        "--set-threads", *(f"{r}={threads}" for r in gpu_rules),
        "--slurm-no-account",
        "--slurm-status-command", "squeue",  # no accounting database: sacct cannot answer
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2",
        "--latency-wait", "5",
        prelude=shorten_plugin_pacing,  # no 5-s pause per sbatch, status checks every <= 2 s
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:] + cluster.log_tail()

    names = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(names) >= 8, names  # each job (a group counts once) went through sbatch
    # every output: tables, predictions, frame, face, dump and CAM files, figures, weights
    assert output_differences(local, remote) == []
