"""Incremental reruns (issue 6, part 4): what Snakemake re-runs after each kind of change.

One small data set of real generated face videos, listed in a manifest (the format a user
with their own videos has), run once through the whole workflow (tiny models); then the
dry-run job list after each change is checked against what must, and must not, re-run.
The tests share the project and run in file order, each leaving it up to date but the
last. Plans are what is tested; one is run (a new video's shard chain), as running the
others would retrain every model for what Snakemake, not this project, does.
"""

from __future__ import annotations

import copy
import os
import re

import pandas as pd
import pytest

from traitlens.demo.generate import default_outputs, generate
from traitlens.ingest.labels import BIG_FIVE
from traitlens.ingest.sharding import assign_shards

from support.workflow import (
    default_config,
    finished_rules,
    job_counts,
    run_snakemake,
    tiny_models,
    write_config,
)

pytestmark = pytest.mark.workflow

N_SHARDS = 4
PER_SHARD_RULES = ("extract_shard", "detect_faces", "estimate_aus")
# their outputs; the AU estimates before the person baseline, which calibrate_aus then
# applies over all shards (a person's clips lie in several)
SHARD_FOLDERS = ("frames", "faces", "aus/uncalibrated")
AGGREGATE_RULES = (
    "build_manifest",
    "calibrate_aus",
    "train_visual",
    "predict_visual",
    "train_linear_model",
    "fuse_predictions",
    "evaluate_models",
)


def _write_manifest(path, videos, labels, splits):
    rows = pd.DataFrame({"video_id": [v.stem for v in videos], "path": [str(v) for v in videos]})
    rows["split"] = splits
    for k, trait in enumerate(BIG_FIVE):
        rows[trait] = [round(x[k], 4) for x in labels]
    rows.to_csv(path, sep="\t", index=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("reruns")
    demo = default_config()["demo"]
    demo.update(n_videos=7, n_identities=3, duration_s=1.0, fps=10, width=192, height=108)
    videos, annotations, truth = default_outputs(root / "data", demo)
    generate(demo, videos, annotations, truth, threads=2, progress=False)
    labels = [[0.2 + 0.1 * ((i + k) % 7) for k in range(5)] for i in range(7)]
    splits = ["train", "train", "train", "validation", "test", "train", "train"]
    manifest = root / "mine.tsv"
    _write_manifest(manifest, videos[:6], labels[:6], splits[:6])  # the 7th comes later

    config = default_config()
    config["dataset"] = {"name": "mine", "format": "manifest", "manifest": str(manifest)}
    config["sharding"].update(n_shards=N_SHARDS)  # pinned: adding a video moves no other
    config["extract"].update(frame_width=192, frame_height=108, frames_per_video=3)
    tiny_models(config)
    configfile = write_config(root / "mine.yaml", config)
    first = run_snakemake(root, configfile)
    assert first.returncode == 0, first.stderr[-3000:]
    return {
        "root": root,
        "config": config,
        "configfile": configfile,
        "manifest": manifest,
        "videos": videos,
        "labels": labels,
        "splits": splits,
    }


def planned_jobs(project, configfile=None) -> tuple[dict[str, int], set[str]]:
    """(job count per rule, shards with an extraction job) of a dry run."""
    result = run_snakemake(project["root"], configfile or project["configfile"], "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}, set()
    stats = out[out.index("Job stats:") :]
    counts = job_counts(stats)
    shards = set(re.findall(r"frames/(s\d+)\.h5", out.split("rule detect_faces")[0]))
    return counts, shards


def test_a_second_run_does_nothing(project):
    assert planned_jobs(project) == ({}, set())


# Settings that say where or how fast a job runs, not what it computes (issue 15, part 3):
# none is a rule param, so a change re-runs nothing (a dry run plans gpu: true jobs without
# a GPU here: it asks the scheduler for one, the local scheduler does not count them).
RUN_SETTINGS = {
    ("train", "gpu"): True,
    ("train", "num_workers"): 3,
    ("train", "threads"): 2,
    ("train", "device"): "cpu",
    ("train", "predict_batch_size"): 5,
    ("activations", "batch_size"): 3,
    ("aus", "detector_batch"): 4,
    ("aus", "detector_device"): "cuda",
    ("analysis", "threads"): 3,
}
# what the face template feeds (the face model's dumps are in activations.models)
TEMPLATE_JOBS = {"build_face_template": 1, "find_detectors": 1, "all": 1}


def changed_config(project, name, section, key, value):
    config = copy.deepcopy(project["config"])
    config[section][key] = value
    return write_config(project["root"] / f"{name}.yaml", config)


def test_the_run_settings_rerun_nothing(project):
    # all at once, in one dry run: a setting that reached a rule's params would plan that
    # rule's jobs whatever else changed with it (the counts name the rule)
    config = copy.deepcopy(project["config"])
    for (section, key), value in RUN_SETTINGS.items():
        assert config[section][key] != value, (section, key)  # a change, not the default
        config[section][key] = value
    configfile = write_config(project["root"] / "run.yaml", config)
    assert planned_jobs(project, configfile) == ({}, set())


def test_region_dilation_reruns_only_the_template_and_what_reads_it(project):
    dilation = project["config"]["faces"]["region_dilation_px"]
    configfile = changed_config(project, "dilation", "faces", "region_dilation_px", dilation + 1)
    counts, shards = planned_jobs(project, configfile)
    rules = {k: n for k, n in counts.items() if k.isidentifier()}  # not 'jobid:' lines
    assert rules == {**TEMPLATE_JOBS, "total": sum(TEMPLATE_JOBS.values())}, counts
    assert shards == set()


def test_result_settings_of_the_same_sections_do_rerun(project):
    # negative controls of the tests above: these settings change results
    amp = changed_config(project, "amp", "train", "amp", not project["config"]["train"]["amp"])
    counts, _ = planned_jobs(project, amp)
    assert counts.get("train_visual") == 4 and counts.get("predict_visual") == 2, counts
    assert counts.get("compute_cam") == 3 and counts.get("dump_activations") == 1, counts
    assert "extract_shard" not in counts and "detect_faces" not in counts, counts
    face = copy.deepcopy(project["config"]["models"]["face"])
    face["epochs"] += 1
    counts, _ = planned_jobs(project, changed_config(project, "epochs", "models", "face", face))
    assert counts.get("train_visual") == 1 and counts.get("predict_visual") == 1, counts
    assert "detect_faces" not in counts and "build_face_template" not in counts, counts
    confidence = project["config"]["faces"]["min_detection_confidence"]
    faces = changed_config(
        project, "detection", "faces", "min_detection_confidence", confidence / 2
    )
    counts, _ = planned_jobs(project, faces)
    used = list((project["root"] / "results/mine/faces").glob("s*.h5"))
    assert counts.get("detect_faces") == len(used) > 1 and "extract_shard" not in counts, counts


def test_a_label_change_reruns_training_not_extraction(project):
    manifest = project["manifest"]
    before, stat = manifest.read_bytes(), manifest.stat()
    table = pd.read_csv(manifest, sep="\t")
    table.loc[0, "openness"] = 0.99
    table.to_csv(manifest, sep="\t", index=False)
    counts, _ = planned_jobs(project)
    for rule in PER_SHARD_RULES:
        assert rule not in counts, counts
    assert counts.get("train_visual") == 4 and counts.get("evaluate_models") == 1, counts
    # back as it was, time stamp included: the plan is what is tested here (running it
    # would retrain every model); the last test runs a plan
    manifest.write_bytes(before)
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned_jobs(project) == ({}, set())


def test_more_frames_per_video_reruns_extraction(project):
    config = project["config"]
    config["extract"]["frames_per_video"] = 4
    changed = write_config(project["root"] / "more_frames.yaml", config)
    counts, shards = planned_jobs(project, changed)
    used = assign_shards([v.stem for v in project["videos"]], N_SHARDS)  # non-empty shards
    assert len(used) > 1
    assert counts.get("extract_shard") == len(used), counts
    assert counts.get("detect_faces") == len(used) and counts.get("train_visual") == 4
    assert shards == set(used)


def test_a_new_video_reruns_its_shard_and_what_aggregates_shards(project):
    """Last, as it leaves the aggregates to do: the plan holds the new video's shard chain
    and every aggregate; the shard chain and the manifest then run, touching no other
    shard's file."""
    _write_manifest(project["manifest"], project["videos"], project["labels"], project["splits"])
    counts, _ = planned_jobs(project)
    new_id = project["videos"][6].stem
    ids = [v.stem for v in project["videos"]]
    shard_of = {v: s for s, members in assign_shards(ids, N_SHARDS).items() for v in members}
    for rule in PER_SHARD_RULES:
        assert counts.get(rule) == 1, (rule, counts)
    for rule in AGGREGATE_RULES:
        assert counts.get(rule), (rule, counts)
    results = project["root"] / "results/mine"
    before = {p: p.stat().st_mtime_ns for top in SHARD_FOLDERS for p in (results / top).glob("s*")}
    shard = shard_of[new_id]
    targets = f"results/mine/aus/uncalibrated/{shard}.tsv", "results/mine/manifest.tsv"
    again = run_snakemake(project["root"], project["configfile"], *targets)
    assert again.returncode == 0, again.stderr[-3000:]
    assert finished_rules(again) == {"build_manifest", *PER_SHARD_RULES}, again.stderr[-3000:]
    touched = {p.name for p, mtime in before.items() if p.stat().st_mtime_ns != mtime}
    assert touched and all(name.startswith(f"{shard}.") for name in touched), touched
    manifest = pd.read_csv(results / "manifest.tsv", sep="\t")
    assert new_id in set(manifest["video_id"])
