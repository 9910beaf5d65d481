"""End to end: real mp4 files in a First Impressions tree through ingest and extraction."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.extract.frame_plan import evenly_spaced_indices
from traitlens.ingest.labels import BIG_FIVE

from support.media import make_clip, read_index
from support.pickles import python2_label_pickle
from support.workflow import run_snakemake, write_config
from support.workflow_config import TRAITS, fi_config

pytestmark = pytest.mark.workflow

FPS = 30
# Test clips show numbers, not faces: the face template (which needs faces) is not asked for.
TARGETS = ("results/fi/manifest.tsv", "results/fi/qc/videos.tsv")
CLIPS = {  # video_id -> (split, frames, GOP, tone)
    "--Ymqszjv54.001": ("training", 61, 15, 1000.0),
    "abcdefghijk.002": ("training", 45, 250, 1000.0),
    "été clip ñ.001": ("validation", 40, 10, 1000.0),
    "silentvideo.001": ("test", 30, 30, None),
}


@pytest.fixture(scope="module")
def fi_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fi")
    folders = {
        s: root / "videos" / f"{s}-1" / f"{s}80_01" for s in ("training", "validation", "test")
    }
    for folder in folders.values():
        folder.mkdir(parents=True)
    labels = {s: {t: {} for t in TRAITS} for s in folders}
    for n, (video_id, (split, frames, gop, tone)) in enumerate(CLIPS.items()):
        make_clip(folders[split] / f"{video_id}.mp4", n_frames=frames, gop=gop, tone_hz=tone)
        for t in TRAITS:
            labels[split][t][f"{video_id}.mp4"] = 0.2 + 0.1 * n
    # A labelled file that is not a video, and a video file nobody labelled.
    (folders["test"] / "zerobyte000.001.mp4").write_bytes(b"")
    for t in TRAITS:
        labels["test"][t]["zerobyte000.001.mp4"] = 0.5
        labels["validation"][t]["nofilexxxxx.001.mp4"] = 0.5
    make_clip(folders["training"] / "unlabelled0.001.mp4", n_frames=20, tone_hz=None)
    for split, by_trait in labels.items():
        (root / f"annotation_{split}.pkl").write_bytes(python2_label_pickle(by_trait))
    config = fi_config(root, max_failed_fraction=0.25)
    configfile = write_config(root / "fi.yaml", config)
    result = run_snakemake(root, configfile, *TARGETS)
    return root, configfile, result


def test_run_succeeds(fi_run):
    _root, _configfile, result = fi_run
    assert result.returncode == 0, result.stderr[-3000:]


def test_manifest_and_ingest_report(fi_run):
    root, _, _ = fi_run
    manifest = pd.read_csv(root / "results/fi/manifest.tsv", sep="\t", dtype={"shard": str})
    assert sorted(manifest["video_id"]) == sorted([*CLIPS, "zerobyte000.001"])
    assert list(manifest.columns) == [
        "video_id", "path", "split", "group", "openness", "conscientiousness", "extraversion",
        "agreeableness", "neuroticism", "interview", "shard",
    ]  # fmt: skip
    row = manifest.set_index("video_id").loc["--Ymqszjv54.001"]
    assert row["split"] == "train" and row["openness"] == pytest.approx(0.2)
    assert row["group"] == "--Ymqszjv54"  # the YouTube id: the person's clips share it
    unmatched = pd.read_csv(root / "results/fi/qc/ingest.tsv", sep="\t").set_index("video_id")
    assert unmatched.loc["unlabelled0.001", "problem"] == "video file has no label"
    assert "no readable video file" in unmatched.loc["nofilexxxxx.001", "problem"]


def test_qc_table(fi_run):
    root, _, _ = fi_run
    qc = pd.read_csv(root / "results/fi/qc/videos.tsv", sep="\t", keep_default_na=False)
    qc = qc.set_index("video_id")
    assert qc.loc["zerobyte000.001", "status"] == "failed"
    assert qc.loc["zerobyte000.001", "reason"]
    ok = qc.drop(index="zerobyte000.001")
    assert (ok["status"] == "ok").all()
    assert ok.loc["silentvideo.001", "has_audio"] == "false"
    assert ok.loc["--Ymqszjv54.001", "has_audio"] == "true"
    assert float(ok.loc["abcdefghijk.002", "fps"]) == pytest.approx(FPS)
    assert int(ok.loc["abcdefghijk.002", "width"]) == 320
    assert (ok["n_frames"].astype(int) == 10).all()


def _shard_files(root, kind):
    return sorted((root / "results/fi" / kind).glob("s*.h5"))


def test_frames_come_from_the_planned_timestamps(fi_run):
    root, _, _ = fi_run
    seen = set()
    for path in _shard_files(root, "frames"):
        with h5py.File(path) as h5:
            ids = [v.decode() if isinstance(v, bytes) else v for v in h5["video_id"][:]]
            frames, video_index = h5["frames"], h5["video_index"][:]
            frame_index, stamps, boxes = (
                h5["frame_index"][:],
                h5["timestamp_s"][:],
                h5["content_box"][:],
            )
            assert frames.shape[1:] == (216, 384, 3)
            for v, video_id in enumerate(ids):
                rows = np.flatnonzero(video_index == v)
                n_frames = CLIPS[video_id][1] if video_id in CLIPS else 20
                assert list(frame_index[rows]) == evenly_spaced_indices(n_frames, 10)
                np.testing.assert_allclose(stamps[rows], frame_index[rows] / FPS, atol=1e-3)
                got = [read_index(frames[r], tuple(boxes[v])) for r in rows]
                assert got == list(frame_index[rows]), video_id
                seen.add(video_id)
    # Extraction is the video side: unlabelled files are extracted too (ingest drops them).
    assert seen == {*CLIPS, "unlabelled0.001"}


def test_audio_features_carry_the_tone(fi_run):
    root, _, _ = fi_run
    seen = {}
    for path in _shard_files(root, "audio"):
        with h5py.File(path) as h5:
            ids = [v.decode() if isinstance(v, bytes) else v for v in h5["video_id"][:]]
            offsets, features = h5["offsets"][:], h5["features"]
            assert h5.attrs["n_mels"] == 40 and h5.attrs["sample_rate"] == 16000
            for v, video_id in enumerate(ids):
                seen[video_id] = features[offsets[v] : offsets[v + 1]]
    assert len(seen["silentvideo.001"]) == 0
    tone = seen["--Ymqszjv54.001"]
    assert len(tone) == pytest.approx(61 / FPS / 0.010, abs=3)  # 10 ms hop
    band_energy = tone.mean(axis=0)
    # A 1 kHz tone: the loudest mel band sits near 1 kHz (band ~ 13-16 of 40 up to 8 kHz).
    assert 10 <= int(np.argmax(band_energy)) <= 18
    assert band_energy.max() - np.median(band_energy) > 3  # log units: well above the rest


def test_second_run_has_nothing_to_do(fi_run):
    root, configfile, _ = fi_run
    result = run_snakemake(root, configfile, "-n", *TARGETS)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_failure_budget_stops_the_run_with_a_list(fi_run):
    root, _, _ = fi_run
    import yaml

    config = yaml.safe_load((root / "fi.yaml").read_text())
    config["extract"]["max_failed_fraction"] = 0.1
    strict = write_config(root / "strict.yaml", config)
    # Targets first: --forcerun takes every name that follows it.
    result = run_snakemake(root, strict, *TARGETS, "--forcerun", "summarise_qc")
    assert result.returncode != 0
    log = (root / "results/fi/logs/summarise_qc.log").read_text()
    assert "zerobyte000.001" in log and "max_failed_fraction" in log
    assert "Traceback" not in log


def test_manifest_format_runs_on_the_users_own_videos(tmp_path):
    """A second user's own videos, listed in a manifest TSV with relative paths."""
    (tmp_path / "clips").mkdir()
    make_clip(tmp_path / "clips" / "interview one.mp4", n_frames=31, gop=10)
    make_clip(tmp_path / "clips" / "-second.mp4", n_frames=25, gop=25, tone_hz=None)
    header = "\t".join(["video_id", "path", "split", *BIG_FIVE])
    (tmp_path / "mine.tsv").write_text(
        f"{header}\n"
        "p01\tclips/interview one.mp4\ttrain\t0.5\t0.4\t0.3\t0.2\t0.1\n"
        "-p02\tclips/-second.mp4\ttest\t0.5\t0.4\t0.3\t0.2\t0.1\n"
    )
    config = fi_config(tmp_path)
    config["dataset"] = {
        "name": "mine",
        "format": "manifest",
        "manifest": str(tmp_path / "mine.tsv"),
    }
    targets = [t.replace("/fi/", "/mine/") for t in TARGETS]
    result = run_snakemake(tmp_path, write_config(tmp_path / "mine.yaml", config), *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = pd.read_csv(tmp_path / "results/mine/manifest.tsv", sep="\t").set_index("video_id")
    assert list(manifest.index) == ["-p02", "p01"]
    assert manifest.loc["p01", "path"] == str(tmp_path / "clips" / "interview one.mp4")
    assert manifest.loc["-p02", "split"] == "test" and manifest.loc["-p02", "openness"] == 0.5
    assert "interview" not in manifest.columns
    qc = pd.read_csv(tmp_path / "results/mine/qc/videos.tsv", sep="\t").set_index("video_id")
    assert list(qc["status"]) == ["ok", "ok"] and qc.loc["p01", "n_frames"] == 10
    assert (qc["n_faces"] == 0).all()  # numbered test patterns: no face, flagged not failed
