"""Kill and rerun: the tiny demo killed with SIGKILL half way through each stage, then run
again, ends with exactly the outputs of an uninterrupted run.

Each kill takes down the whole run (Snakemake and every job, as a power cut or a
scheduler's ``kill -9`` would) at a kill point of traitlens.core.faults, where the stage is
known to be half done. After each kill the test checks the half-done state on disk (no
truncated output under its final name), unlocks the folder as the README tells users to,
and goes on; the last run must finish and match the uninterrupted tiny demo file for file.
The two runs start from scratch in different folders, so this is also the determinism
check: same seed, identical outputs (bytes; training logs by value without timings).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from support.workflow import output_differences, run_snakemake

pytestmark = pytest.mark.workflow

RESULTS = Path("results/tiny")


def run_until_killed(workdir: Path, configfile: Path, point: str):
    """The workflow with the kill point armed, in a process group of its own (the group
    the kill point takes down; never the test's own)."""
    env = {"TRAITLENS_KILL_AT": point}
    return run_snakemake(workdir, configfile, timeout=600, env=env, own_session=True)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".tmp-*"))


def half_done_extraction(results: Path) -> None:
    assert not (results / "frames/s000.h5").exists()
    assert temp_files(results / "frames")  # the shard was being written


def half_done_faces(results: Path) -> None:
    assert not (results / "faces/s000.h5").exists()
    assert temp_files(results / "faces")


def half_done_aus(results: Path) -> None:
    # one of the job's two outputs is complete, the other missing: Snakemake must redo both
    # (the shard's estimates, before the person baseline of the default config)
    assert (results / "aus/uncalibrated/s000.tsv").exists()
    assert not (results / "aus/uncalibrated/s000.videos.tsv").exists()


def half_done_training(results: Path) -> None:
    resumable = [
        m.name
        for m in (results / "models").iterdir()
        if (m / "checkpoints/epoch_001.pt").exists() and not (m / "weights.pt").exists()
    ]
    assert resumable  # killed after epoch 1 of 2: the rerun resumes from the checkpoint


def half_done_dumps(results: Path) -> None:
    # the trained model's dumps or its untrained control's, whichever reached the kill
    # point first (with one thread per job both may have been running side by side): its
    # layers are all temp files, none under its final name
    folders = [results / "activations" / name for name in ("face", "face_random_init")]
    killed = [folder for folder in folders if temp_files(folder) and not list(folder.glob("*.h5"))]
    assert killed, folders


def half_done_detectors(results: Path) -> None:
    # the trained model's detectors or its untrained control's, whichever ran first: the
    # table is written before the kill, the montages are not
    runs = [
        (results / "tables/detectors.tsv", results / "figures"),
        (results / "controls/random_init/detectors.tsv", results / "controls/random_init"),
    ]
    killed = [
        (table, figures)
        for table, figures in runs
        if table.exists() and not list(figures.glob("detectors_*.png"))
    ]
    assert killed, runs  # both may have been running side by side


STAGES = {
    "extract_shard": half_done_extraction,
    "detect_faces": half_done_faces,
    "estimate_aus": half_done_aus,
    "train_visual": half_done_training,
    "dump_activations": half_done_dumps,
    "find_detectors": half_done_detectors,
}


def test_killed_in_every_stage_the_reruns_end_with_the_uninterrupted_outputs(tiny_demo, tmp_path):
    reference, configfile = tiny_demo
    results = tmp_path / RESULTS
    for point, check_half_done in STAGES.items():
        killed = run_until_killed(tmp_path, configfile, point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-3000:])
        check_half_done(results)
        # Snakemake itself was killed: its lock stays until --unlock
        # (README, "When a run is killed")
        unlock = run_snakemake(tmp_path, configfile, "--unlock")
        assert unlock.returncode == 0, unlock.stderr[-2000:]

    final = run_snakemake(tmp_path, configfile)
    assert final.returncode == 0, final.stderr[-3000:]
    train_logs = (results / "logs/train_visual").glob("*.log")
    assert any("resuming after epoch 1" in log.read_text() for log in train_logs)
    assert not [str(p) for p in results.rglob(".tmp-*")]  # no leftovers of killed writes
    assert output_differences(reference, tmp_path) == []
    again = run_snakemake(tmp_path, configfile, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
