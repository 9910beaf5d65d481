"""config/first_impressions.yaml end to end, as a new user runs it, on clips of the
corpus' frame size (1280x720, 30 fps, H.264 + AAC), named, foldered and labelled as the
corpus is (tests/support/first_impressions_sample.py).

The shipped file is listed first and a second config after it changes only what the
brief allows: its placeholder paths pointed at the sample, the epochs (1, to fit 2 cores)
and the backbone weights (a VGG-Face state dict the test writes). Every rule of the
workflow runs (those of the demo's planted truth aside), and the report is built.

The sample is the smallest that exercises every path: one person per split and a fourth
labelled clip cut in half. One unreadable clip in four is over
`extract.max_failed_fraction` (5%), so the first run stops at QC naming it; the clip is
then removed, as the message says, and the rerun finishes, listing it as labelled with no
file. (The path where a failed clip is left out and the run goes on needs 20 readable
clips for each failed one; tests/test_bad_input_corpus.py covers it, and
bench/bench_first_impressions.py runs it at full size.)
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support.first_impressions_sample import (
    SHIPPED_CONFIG,
    SPLIT_FOLDERS,
    Sample,
    make_sample,
    overrides,
    vgg_face_state_dict,
)
from support.workflow import REPO, finished_rules, run_snakemake, tool

pytestmark = pytest.mark.fullsize  # opt-in: bash setup.sh test -m fullsize

RESULTS = "results/first_impressions"
# 10 s, not the corpus' 15 s: a clip still spans two of x264's 250-frame GOPs, so its 10
# frames are read by seeking into both, as at 15 s (test_clips_are_read_by_seeking_...);
# rendering 720p frames is the largest cost of the sample
CLIP_S = 10.0
# Rules the default target does not ask for on First Impressions: a py-feat export on
# request, and the untrained-network controls (the demo scores them against its truth)
OFF_DEFAULT_TARGET = (
    f"{RESULTS}/controls/random_init/detectors.tsv",
    f"{RESULTS}/controls/random_init/au_emergence.tsv",
)
CNN_MODELS = ("img", "face", "img_cam", "face_cam")
PLANTED_AUS = ("AU01", "AU12", "AU26", "AU43")


@dataclass(frozen=True)
class FiRun:
    root: Path
    sample: Sample
    weights: Path
    configs: list[Path]
    stopped: subprocess.CompletedProcess  # with the cut clip: stops at QC
    stopped_log: str  # its QC job's log (the rerun's QC job writes the file again)
    result: subprocess.CompletedProcess  # after removing it, every rule
    report: subprocess.CompletedProcess

    @property
    def results(self) -> Path:
        return self.root / RESULTS


@pytest.fixture(scope="module")
def fi_run(tmp_path_factory) -> FiRun:
    from traitlens.ingest.sharding import shard_index, shard_name

    root = tmp_path_factory.mktemp("first_impressions")
    sample = make_sample(root / "data", n_videos=3, n_identities=3, duration_s=CLIP_S)
    weights = vgg_face_state_dict(root / "data" / "vgg_face_dag.pth")
    configs = [SHIPPED_CONFIG, overrides(sample, weights)]
    stopped = run_snakemake(root, configs, f"{RESULTS}/qc/videos.tsv")
    stopped_log = (root / RESULTS / "logs" / "summarise_qc.log").read_text()
    cut = sample.videos / SPLIT_FOLDERS["training"] / f"{sample.truncated}.mp4"
    cut.unlink()
    readable = next(v for v in sample.video_ids if v != sample.truncated)
    fex = f"{RESULTS}/aus/{shard_name(shard_index(readable, 128), 128)}.fex.csv"
    result = run_snakemake(root, configs, "all", fex, *OFF_DEFAULT_TARGET, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    report = run_snakemake(root, configs, "--report", str(root / RESULTS / "report.html"))
    return FiRun(root, sample, weights, configs, stopped, stopped_log, result, report)


def listed_rules(*configs: Path) -> set[str]:
    """The rules the workflow defines under these configs (none: the demo's config.yaml)."""
    command = [tool("snakemake"), "--snakefile", str(REPO / "Snakefile"), "--list-rules"]
    if configs:
        command += ["--configfile", *map(str, configs)]
    listed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    return set(listed) - {"all"}  # "all" runs nothing


def test_every_rule_ran(fi_run):
    """Every rule First Impressions defines ran to completion over the two runs (the first
    made the shards' frames and faces before it stopped at QC)."""
    ran = finished_rules(fi_run.stopped) | finished_rules(fi_run.result)
    defined = listed_rules(*fi_run.configs)
    assert defined - ran == set(), f"rules that never ran: {sorted(defined - ran)}"
    demo_only = listed_rules() - defined
    assert {"generate_demo", "validate_planted"} <= demo_only, demo_only
    assert not demo_only & ran
    assert re.search(r"(\d+) of \1 steps \(100%\) done", fi_run.result.stderr)


def test_it_ran_at_the_corpus_sizes_from_the_given_weights(fi_run):
    """640x360 frames, 224-pixel faces, the full-width VGG16 at 224, loaded from the file:
    the shipped settings, only the epochs and weights changed."""
    import h5py
    import torch

    for path in (fi_run.results / "frames").glob("*.h5"):
        with h5py.File(path) as f:
            assert f["frames"].shape[1:] == (360, 640, 3), path
    for path in (fi_run.results / "faces").glob("s*.h5"):
        with h5py.File(path) as f:
            assert f["aligned"].shape[1:] == (224, 224, 3), path
    given = torch.load(fi_run.weights, weights_only=True)["conv1_1.weight"].flatten()
    for model in CNN_MODELS:
        log = (fi_run.results / "logs" / "train_visual" / f"{model}.log").read_text()
        assert f"loaded 13 backbone layers from {fi_run.weights}" in log, model
        state = torch.load(fi_run.results / "models" / model / "weights.pt", weights_only=True)
        assert state["dan_config"]["width_divisor"] == 1, model
        assert state["dan_config"]["input_size"] == 224, model
        assert state["model"]["backbone.conv5_3.weight"].shape == (512, 512, 3, 3), model
        trained = state["model"]["backbone.conv1_1.weight"].flatten()
        assert torch.corrcoef(torch.stack([given, trained]))[0, 1] > 0.9, model
    history = pd.read_csv(fi_run.results / "models" / "img" / "training_log.tsv", sep="\t")
    assert list(history["epoch"]) == [1]
    # negative control: the untrained control network was not started from the file
    control = torch.load(fi_run.results / "models/face/random_init.pt", weights_only=True)
    untrained = control["model"]["backbone.conv1_1.weight"].flatten()
    assert abs(torch.corrcoef(torch.stack([given, untrained]))[0, 1]) < 0.2


def test_a_cut_clip_stops_the_first_run_and_is_reported_after(fi_run):
    cut = fi_run.sample.truncated
    assert fi_run.stopped.returncode != 0
    for text in (fi_run.stopped_log, fi_run.stopped.stderr):
        assert cut in text and "truncated" in text and "max_failed_fraction" in text
    assert "Traceback" not in fi_run.stopped_log
    ingest = pd.read_csv(fi_run.results / "qc/ingest.tsv", sep="\t", dtype=str)
    assert list(ingest["video_id"]) == [cut]
    assert "no readable video file" in ingest["problem"].iloc[0]
    summary = (fi_run.results / "qc/summary.html").read_text()
    assert "Videos left out at ingest (1)" in summary and cut in summary
    videos = pd.read_csv(fi_run.results / "qc/videos.tsv", sep="\t", dtype={"video_id": str})
    readable = sorted(set(fi_run.sample.video_ids) - {cut})
    assert sorted(videos["video_id"]) == readable
    assert (videos["status"] == "ok").all() and (videos["n_faces"] == 10).all()
    assert (videos["width"] == 1280).all() and (videos["fps"] == 30).all()
    manifest = pd.read_csv(fi_run.results / "manifest.tsv", sep="\t", dtype=str)
    assert sorted(manifest["video_id"]) == readable


def test_the_planted_action_units_come_through(fi_run):
    """The generator's planted AU intensities against the AU stage's estimates, frame by
    frame (aus.baseline: video, as shipped); negative control: the same estimates against
    the truth of other frames."""
    from traitlens.aus.estimate_aus import read_frame_table
    from traitlens.demo.au_validation import join_truth, load_truth, pearson

    tables = sorted((fi_run.results / "aus").glob("s*[0-9].tsv"))
    estimates = pd.concat([read_frame_table(p) for p in tables], ignore_index=True)
    truth, planted = load_truth(fi_run.sample.ground_truth)
    assert tuple(planted) == PLANTED_AUS
    joined = join_truth(estimates, truth)
    assert len(joined) == 30
    r = {au: pearson(joined[f"{au}_true"], joined[au]) for au in planted}
    assert min(r.values()) > 0.3 and np.mean(list(r.values())) > 0.5, r
    shuffled = np.random.default_rng(0).permutation(len(joined))
    r_other = [pearson(joined[f"{au}_true"].to_numpy()[shuffled], joined[au]) for au in planted]
    assert abs(np.mean(r_other)) < 0.3, r_other


def test_clips_are_read_by_seeking_into_both_gops_as_at_15_seconds(fi_run):
    """The clip length only moves frames within GOPs: at 10 s as at 15 s the 10 frames
    fall in both of x264's 250-frame GOPs and the plan seeks into each."""
    from traitlens.extract.frame_plan import evenly_spaced_indices, plan_frames
    from traitlens.extract.probe import probe_mp4

    clip = next(fi_run.sample.videos.rglob("*.mp4"))
    probe = probe_mp4(clip)
    keyframes = np.flatnonzero(probe.keyframe)
    assert list(keyframes) == [0, 250] and len(probe.keyframe) == 300
    wanted = evenly_spaced_indices(len(probe.keyframe), 10)
    plan = plan_frames(probe.keyframe, wanted, 1280 * 720 / 1e6, 2, probe.reference)
    assert plan.method == "seek"
    assert sorted(seg.start for job in plan.jobs for seg in job) == [0, 250]


def read_output(path: Path) -> None:
    """Open an output the way its readers do; raises when it is not readable."""
    suffix = path.suffix
    if suffix == ".h5":
        import h5py

        with h5py.File(path) as f:
            f.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    elif suffix in (".tsv", ".csv"):
        pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            image.verify()
    elif suffix == ".pt":
        import torch

        torch.load(path, weights_only=True)
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".html":
        if "</html>" not in path.read_text(errors="replace"):
            raise ValueError(f"{path}: not a whole HTML page")
    elif suffix == ".md":  # a table for the README
        if "|---" not in path.read_text():
            raise ValueError(f"{path}: not a Markdown table")
    else:
        raise ValueError(f"{path}: an output of a kind this test does not know")


def test_every_output_is_readable(fi_run, tmp_path):
    outputs = [
        p
        for p in fi_run.results.rglob("*")
        if p.is_file() and not {"logs", "benchmarks"} & set(p.relative_to(fi_run.results).parts)
    ]
    assert len(outputs) > 100
    for path in outputs:
        read_output(path)
    # negative control: an HDF5 output cut short is not readable
    cut = tmp_path / "cut.h5"
    whole = (fi_run.results / "frames").glob("*.h5").__next__().read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError):
        read_output(cut)


def test_the_report_builds(fi_run):
    assert fi_run.report.returncode == 0, fi_run.report.stderr[-3000:]
    html = (fi_run.results / "report.html").read_text(encoding="utf-8", errors="replace")
    assert len(html) > 1_000_000  # figures are embedded
    for category in (
        "0. Quality control",
        "1. Models",
        "2. Discriminative regions (CAM)",
        "4. Interpretability of the face CNN",
        "5. Action Units",
    ):
        assert category in html, category
    assert "6. Scored against the planted truth" not in html  # the demo's truth only
    for name in ("cam_img_openness.png", "detectors.tsv", "au_emergence.png", "summary.html"):
        assert name in html, name
