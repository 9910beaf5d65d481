"""The face stage of a shard: faces/<shard>.h5 rows match frames/<shard>.h5, QC, errors."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.extract.frames_file import open_frames
from traitlens.faces.detect_faces import detect_faces_shard, video_rows
from traitlens.faces.faces_file import FACES_SCHEMA
from traitlens.faces.faces_qc import (
    FACE_QC_COLUMNS,
    face_counts,
    read_face_qc,
    reason_summary,
    video_qc_row,
)
from traitlens.faces.video_faces import MESH_FAILED, NO_FACE, FaceParams

from support.face_photos import astronaut, fit, grace_hopper, no_face_pictures

W, H = 384, 216
PARAMS = FaceParams(aligned_size=64)
DATASETS = {
    "success": ((), np.bool_),
    "reason": ((), object),
    "n_faces_seen": ((), np.int8),
    "score": ((), np.float32),
    "box": ((4,), np.float32),
    "landmarks": ((478, 3), np.float32),
    "transform": ((2, 3), np.float32),
    "aligned": ((64, 64, 3), np.uint8),
    "aligned_landmarks": ((478, 2), np.float32),
    "video_index": ((), np.int32),
    "frame_index": ((), np.int32),
}


def _videos():
    a, g = fit(astronaut(), W, H), fit(grace_hopper(), W, H)
    coffee, rocket = (fit(p, W, H) for p in no_face_pictures())
    # Grace Hopper where she was, and a smaller astronaut face (higher score) on the right
    two = g.copy()
    face = astronaut()[20:260, 110:350]
    two[100:196, W - 96 : W] = cv2.resize(face, (96, 96), interpolation=cv2.INTER_AREA)
    return [
        ("vidA.001", [a, coffee, a[:, ::-1].copy()]),  # a no-face frame inside a video
        ("vidB.001", [g, g, two]),  # a second face shows up in the last frame
        ("vidC.001", [rocket, coffee]),  # no face at all
    ]


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    from support.face_photos import write_frames_h5

    root = tmp_path_factory.mktemp("faces_shard")
    frames = write_frames_h5(root / "frames" / "s000.h5", _videos(), interleave=True)
    out = root / "faces" / "s000.h5"
    qc = root / "qc" / "faces" / "s000.tsv"
    rows = detect_faces_shard(frames, out, qc, PARAMS, batch=2, progress=False)
    return frames, out, qc, rows


@pytest.mark.media
def test_rows_match_the_frames_file(shard):
    frames_path, out, _, _ = shard
    with h5py.File(frames_path) as fr, h5py.File(out) as f:
        n = fr["frames"].shape[0]
        for name, (shape, dtype) in DATASETS.items():
            assert f[name].shape == (n, *shape), name
            if dtype is not object:
                assert f[name].dtype == dtype, name
            assert name in f.attrs["schema"], name
        np.testing.assert_array_equal(f["video_index"][:], fr["video_index"][:])
        np.testing.assert_array_equal(f["frame_index"][:], fr["frame_index"][:])
        assert list(f["video_id"].asstr()[:]) == ["vidA.001", "vidB.001", "vidC.001"]
        assert f["aligned"].chunks == (1, 64, 64, 3)
        assert f.attrs["aligned_size"] == 64 and f.attrs["schema"] == FACES_SCHEMA
        # per row: the expected outcome for that video's frame
        expected = {(0, 0): 1, (0, 1): 0, (0, 2): 1, (1, 0): 1, (1, 1): 1, (1, 2): 2}
        vi, fi = f["video_index"][:], f["frame_index"][:]
        success, reason = f["success"][:], f["reason"].asstr()[:]
        for i in range(n):
            seen = expected.get((vi[i], fi[i]), 0)
            assert f["n_faces_seen"][i] == seen
            assert success[i] == (seen > 0)
            assert reason[i] == ("" if seen else NO_FACE)
            assert bool(f["aligned"][i].any()) == (seen > 0)
            assert np.isfinite(f["transform"][i]).all() == (seen > 0)


@pytest.mark.media
def test_the_main_face_is_kept_when_a_second_one_appears(shard):
    _, out, _, _ = shard
    with h5py.File(out) as f:
        rows = np.flatnonzero(f["video_index"][:] == 1)
        boxes = f["box"][:][rows]
        order = np.argsort(f["frame_index"][:][rows])
    # frame 2 adds an astronaut on the right: Grace Hopper (the video's face) is kept
    np.testing.assert_allclose(boxes[order[2]], boxes[order[0]], atol=1.0)
    assert boxes[order[2], 2] < W - 96  # not the pasted face


@pytest.mark.media
def test_qc_table(shard):
    _, _, qc, rows = shard
    table = read_face_qc(qc)
    assert list(table.columns) == FACE_QC_COLUMNS
    assert table.to_dict("records") == [
        {
            "video_id": "vidA.001",
            "n_frames": 3,
            "n_faces": 2,
            "multiple_faces_seen": False,
            "reason": "no face: 1",
        },
        {
            "video_id": "vidB.001",
            "n_frames": 3,
            "n_faces": 3,
            "multiple_faces_seen": True,
            "reason": "",
        },
        {
            "video_id": "vidC.001",
            "n_frames": 2,
            "n_faces": 0,
            "multiple_faces_seen": False,
            "reason": "no face: 2",
        },
    ]
    assert face_counts([table]) == {"vidA.001": 2, "vidB.001": 3, "vidC.001": 0}
    assert [r["video_id"] for r in rows] == list(table["video_id"])


@pytest.mark.media
def test_same_results_whatever_the_batch_and_row_order(shard, tmp_path):
    from support.face_photos import write_frames_h5

    _, out, _, _ = shard
    frames = write_frames_h5(tmp_path / "frames.h5", _videos(), interleave=False)
    again = tmp_path / "faces.h5"
    detect_faces_shard(frames, again, tmp_path / "qc.tsv", PARAMS, batch=64, progress=False)
    with h5py.File(out) as a, h5py.File(again) as b:
        key_a = list(zip(a["video_index"][:], a["frame_index"][:], strict=True))
        key_b = list(zip(b["video_index"][:], b["frame_index"][:], strict=True))
        perm = [key_a.index(k) for k in key_b]
        for name in ("success", "n_faces_seen", "box", "landmarks", "aligned"):
            np.testing.assert_array_equal(a[name][:][perm], b[name][:], err_msg=name)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert not leftovers


@pytest.mark.media
def test_an_empty_shard_gives_empty_outputs(tmp_path):
    from support.face_photos import write_frames_h5

    frames = write_frames_h5(tmp_path / "frames.h5", [])
    rows = detect_faces_shard(frames, tmp_path / "f.h5", tmp_path / "q.tsv", PARAMS, progress=False)
    assert rows == []
    with h5py.File(tmp_path / "f.h5") as f:
        assert f["aligned"].shape == (0, 64, 64, 3) and f["video_id"].shape == (0,)
    assert read_face_qc(tmp_path / "q.tsv").empty


@pytest.mark.media
def test_a_frames_file_without_its_datasets_is_a_clear_error(tmp_path):
    bad = tmp_path / "s001.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("frames", data=np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(UserError, match=r"s001\.h5: missing dataset.*extract_shard"):
        open_frames(bad)
    notes = tmp_path / "s002.h5"
    notes.write_text("not hdf5")
    with pytest.raises(UserError, match=r"s002\.h5: not a readable HDF5.*extract_shard"):
        detect_faces_shard(notes, tmp_path / "o.h5", tmp_path / "o.tsv", PARAMS, progress=False)
    assert not (tmp_path / "o.h5").exists()


def test_a_frames_file_with_bad_indices_is_a_clear_error(tmp_path):
    from support.face_photos import write_frames_h5

    path = write_frames_h5(tmp_path / "s003.h5", [("v.001", [np.zeros((8, 8, 3), np.uint8)])])
    with h5py.File(path, "r+") as f:
        f["video_index"][0] = 5
    with pytest.raises(UserError, match="video_index points outside"):
        open_frames(path)


def test_video_rows_groups_rows_in_file_order():
    rows = video_rows(np.array([1, 0, 1, 0, 2], np.int32), 4)
    assert [r.tolist() for r in rows] == [[1, 3], [0, 2], [4], []]


def test_qc_helpers():
    assert reason_summary(["", NO_FACE, MESH_FAILED, NO_FACE]) == "mesh failed: 1; no face: 2"
    assert reason_summary(["", ""]) == ""
    row = video_qc_row("v", np.array([], bool), np.array([], np.int8), [])
    assert row["reason"] == "no frames" and row["n_faces"] == 0
    with pytest.raises(UserError, match="more than one shard"):
        face_counts([pd.DataFrame({"video_id": ["v"], "n_faces": [1]})] * 2)


def test_a_table_that_is_not_face_qc_is_a_clear_error(tmp_path):
    path = tmp_path / "s000.tsv"
    path.write_text("video_id\tstatus\nv\tok\n")
    with pytest.raises(UserError, match=r"s000\.tsv: not a readable face QC table.*detect_faces"):
        read_face_qc(path)
