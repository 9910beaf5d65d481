"""Extracting a whole shard: HDF5 contents, QC rows, broken videos among good ones."""

from __future__ import annotations

import time

import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.extract.audio_features import AudioParams
from traitlens.extract.extract_shard import extract_shard
from traitlens.extract.frame_plan import evenly_spaced_indices
from traitlens.extract.qc import SHARD_QC_COLUMNS

from support.media import make_clip, read_index, truncate_half

pytestmark = pytest.mark.media

AUDIO = AudioParams()
N, W, H = 6, 96, 72


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard")
    good = make_clip(d / "--Ymqszjv54.001.mp4", n_frames=45, gop=15)
    (d / "empty.mp4").write_bytes(b"")
    return [
        ("--Ymqszjv54.001", str(good)),
        ("empty", str(d / "empty.mp4")),
        ("ünï cödé", str(make_clip(d / "ünï cödé.mp4", n_frames=20, tone_hz=None))),
        ("half", str(truncate_half(good, d / "half.mp4"))),
        ("three", str(make_clip(d / "three.mp4", n_frames=3))),  # fewer frames than N
    ]


def run(videos, out, threads=2):
    paths = {k: out / f"{k}.{ext}" for k, ext in (("frames", "h5"), ("audio", "h5"), ("qc", "tsv"))}
    rows = extract_shard(
        videos, paths["frames"], paths["audio"], paths["qc"], N, W, H, AUDIO, threads, False
    )
    return rows, paths


@pytest.fixture(scope="module")
def shard(videos, tmp_path_factory):
    return run(videos, tmp_path_factory.mktemp("out"))


def test_qc_table(shard):
    rows, paths = shard
    qc = pd.read_csv(paths["qc"], sep="\t", dtype=str, keep_default_na=False)
    assert list(qc.columns) == SHARD_QC_COLUMNS
    assert list(qc["video_id"]) == ["--Ymqszjv54.001", "empty", "ünï cödé", "half", "three"]
    assert list(qc["status"]) == ["ok", "failed", "ok", "failed", "ok"]
    assert list(qc["n_frames"]) == ["6", "0", "6", "0", "3"]
    good = qc.iloc[0]
    assert (good["reason"], good["width"], good["height"]) == ("", "320", "180")
    assert (good["fps"], good["duration_s"]) == ("30", "1.5")
    assert list(qc["has_audio"]) == ["true", "", "false", "", "true"]
    for reason in qc.loc[qc["status"] == "failed", "reason"]:
        assert reason and "\n" not in reason and "\t" not in reason
    assert rows[1]["status"] == "failed"


def test_frames_file(shard):
    _, paths = shard
    with h5py.File(paths["frames"], "r") as f:
        ids = [v.decode() for v in f["video_id"][:]]
        assert ids == ["--Ymqszjv54.001", "ünï cödé", "three"]  # failed videos: no rows
        frames = f["frames"]
        assert frames.shape == (15, H, W, 3) and frames.dtype == np.uint8
        assert frames.chunks == (1, H, W, 3) and frames.compression is None
        assert f["content_box"].shape == (3, 4) and f["content_box"].dtype == np.int32
        video_index, frame_index = f["video_index"][:], f["frame_index"][:]
        assert video_index.dtype == np.int32 and frame_index.dtype == np.int32
        expected = [(0, i) for i in evenly_spaced_indices(45, N)]
        expected += [(1, i) for i in evenly_spaced_indices(20, N)] + [(2, 0), (2, 1), (2, 2)]
        assert list(zip(video_index, frame_index, strict=True)) == expected
        np.testing.assert_allclose(f["timestamp_s"][:], frame_index / 30.0, atol=1e-6)
        boxes = f["content_box"][:]
        seen = [
            read_index(frame, tuple(boxes[v]))
            for frame, v in zip(frames[:], video_index, strict=True)
        ]
        assert seen == list(frame_index)  # the pixels are the frames the index claims
        attrs = dict(f.attrs)
        assert (attrs["frames_per_video"], attrs["frame_width"], attrs["frame_height"]) == (N, W, H)
        assert "ffmpeg" in attrs["created_by"]
        for name in f:
            assert name in attrs["schema"]


def test_audio_file(shard):
    _, paths = shard
    with h5py.File(paths["audio"], "r") as f:
        assert [v.decode() for v in f["video_id"][:]] == ["--Ymqszjv54.001", "ünï cödé", "three"]
        offsets = f["offsets"][:]
        assert offsets.dtype == np.int64 and offsets[0] == 0
        lengths = np.diff(offsets)
        assert lengths[0] == pytest.approx(150, abs=5) and lengths[1] == 0 and lengths[2] > 0
        assert list(f["has_audio"][:]) == [True, False, True]
        features = f["features"]
        assert features.shape == (offsets[-1], AUDIO.n_mels) and features.dtype == np.float32
        # the 1 kHz tone: its band is the loudest of the first video
        profile = features[offsets[0] : offsets[1]].mean(axis=0)
        edges = np.linspace(2595 * np.log10(1 + 20 / 700), 2595 * np.log10(1 + 8000 / 700), 42)
        centres = 700 * (10 ** (edges[1:-1] / 2595) - 1)
        assert abs(centres[np.argmax(profile)] - 1000) < 100
        attrs = dict(f.attrs)
        for key, value in AUDIO.as_dict().items():
            assert attrs[key] == value
        for name in f:
            assert name in attrs["schema"]


def test_identical_inputs_give_identical_bytes(videos, shard, tmp_path):
    _, first = shard
    time.sleep(1.1)  # a stored timestamp would differ now
    _, second = run(videos, tmp_path, threads=1)  # and the thread count changes nothing
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), key
    assert not list(tmp_path.glob(".tmp-*"))  # temporary files renamed or removed


def test_all_videos_failed(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 100)
    rows, paths = run([("bad", str(bad))], tmp_path)
    assert [r["status"] for r in rows] == ["failed"]
    with h5py.File(paths["frames"]) as f:
        assert f["frames"].shape == (0, H, W, 3) and f["video_id"].shape == (0,)
        assert f["content_box"].shape == (0, 4)
    with h5py.File(paths["audio"]) as f:
        assert f["features"].shape == (0, 40) and list(f["offsets"][:]) == [0]


def test_duplicate_ids_are_refused(videos, tmp_path):
    with pytest.raises(ValueError, match="unique"):
        run([videos[0], videos[0]], tmp_path)
