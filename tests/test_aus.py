"""AU columns, the OpenFace-17 view, per-video baselines, tables and one shard end to end."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.aus import estimate_aus as aus
from traitlens.aus.au_mesh_model import load_model
from traitlens.aus.mesh_backend import neutral_face
from traitlens.core.errors import UserError
from traitlens.faces.faces_file import FaceRows, read_faces


def test_columns_hold_the_openface_view():
    assert len(aus.PYFEAT_AUS) == 20 and aus.PYFEAT_AUS == load_model().au_columns
    assert aus.AU_COLUMNS == (*aus.PYFEAT_AUS, "AU45")
    assert len(aus.OPENFACE_17) == 17 and set(aus.OPENFACE_17) <= set(aus.AU_COLUMNS)
    # docs/method.md §5, in its order
    method = "AU01 02 04 05 06 07 09 10 12 14 15 17 20 23 25 26 45".split()
    assert aus.OPENFACE_17 == tuple(f"AU{n[-2:]}" for n in method)


def test_au45_is_au43():
    values = np.arange(40, dtype=float).reshape(2, 20)
    out = aus.with_au45(values, aus.PYFEAT_AUS)
    assert out.shape == (2, 21)
    assert np.array_equal(out[:, 20], values[:, aus.PYFEAT_AUS.index("AU43")])
    shuffled = tuple(reversed(aus.PYFEAT_AUS))  # reordered by name, not position
    assert np.array_equal(aus.with_au45(values[:, ::-1], shuffled), out)


def test_video_baseline_is_per_video_and_per_au():
    values = np.array([[0.5, 0.1], [0.7, 0.3], [0.2, 0.9], [0.4, 0.8], [np.nan, np.nan]])
    video = np.array([0, 0, 1, 1, 1])
    out = aus.subtract_baseline(values, video, 0.0)
    expected = np.array([[0.0, 0.0], [0.2, 0.2], [0.0, 0.1], [0.2, 0.0], [np.nan, np.nan]])
    assert np.allclose(out, expected, equal_nan=True)
    # a percentile above the minimum clips the lowest frames at 0, never below
    assert np.nanmin(aus.subtract_baseline(values, video, 50.0)) == 0.0


def _rows(n_per_video=(3, 2), fail=(1,)):
    ids = tuple(f"vid{i}.00{i}" for i in range(len(n_per_video)))
    vi = np.repeat(np.arange(len(n_per_video)), n_per_video)
    success = np.ones(len(vi), bool)
    success[list(fail)] = False
    lm = np.full((len(vi), 478, 3), np.nan, np.float32)
    return FaceRows(ids, vi, np.arange(len(vi)) * 5, success, lm)


def test_frame_table_and_video_means():
    rows = _rows()
    values = np.tile(np.linspace(0, 1, 21), (5, 1))
    values[3] += 0.1
    frames = aus.frame_table(rows, values)
    assert tuple(frames.columns) == aus.FRAME_COLUMNS
    assert frames["success"].tolist() == [True, False, True, True, True]
    assert frames.loc[1, list(aus.AU_COLUMNS)].isna().all()
    videos = aus.video_means(frames, rows.video_ids + ("vid9.009",))
    assert tuple(videos.columns) == aus.VIDEO_COLUMNS
    assert videos["n_frames"].tolist() == [2, 2, 0]
    assert videos.loc[1, "AU02"] == pytest.approx(0.05 + 0.05)
    assert videos.iloc[2][list(aus.AU_COLUMNS)].isna().all()


def test_tsv_round_trip(tmp_path):
    rows = _rows()
    frames = aus.frame_table(rows, np.full((5, 21), 0.123456))
    aus.write_tsv(frames, tmp_path / "s000.tsv")
    text = (tmp_path / "s000.tsv").read_text().splitlines()
    assert text[0].split("\t") == list(aus.FRAME_COLUMNS)
    assert text[1].split("\t")[2:4] == ["true", "0.1235"]
    assert text[2].split("\t")[2:4] == ["false", ""]  # no face: empty AU cells
    back = aus.read_frame_table(tmp_path / "s000.tsv")
    assert back["success"].tolist() == frames["success"].tolist()
    assert back["video_id"].tolist() == frames["video_id"].tolist()


def write_faces(path, rows: FaceRows) -> None:
    with h5py.File(path, "w") as f:
        f["video_id"] = np.array(rows.video_ids, dtype=h5py.string_dtype())
        f["video_index"] = rows.video_index.astype(np.int32)
        f["frame_index"] = rows.frame_index.astype(np.int32)
        f["success"] = rows.success
        f["landmarks"] = rows.landmarks.astype(np.float32)


def test_estimate_shard_on_a_synthetic_faces_file(tmp_path):
    model = load_model()
    rows = _rows((3, 3), fail=(4,))
    smile = np.array([0.0, 0.3, 0.6, 0.1, 0.0, 0.5])
    lm = []
    for s in smile:
        mesh = neutral_face(model, 1.0) + model.delta(model.au_vector({"AU12": s, "AU43": 0.3}))
        mesh[..., 1:] *= -1.0  # image axes
        lm.append(mesh * 2.0 + [300.0, 200.0, 0.0])
    rows = FaceRows(rows.video_ids, rows.video_index, rows.frame_index, rows.success, np.array(lm))
    write_faces(tmp_path / "faces.h5", rows)
    frames, videos = aus.estimate_shard(tmp_path / "faces.h5", aus.AuConfig())
    ok = frames["success"].to_numpy()
    assert ok.tolist() == [True, True, True, True, False, True]
    assert np.allclose(frames.loc[ok, "AU12"], smile[ok], atol=0.08)
    assert np.allclose(frames.loc[ok, "AU45"], frames.loc[ok, "AU43"])
    assert videos["n_frames"].tolist() == [3, 2]
    base, _ = aus.estimate_shard(tmp_path / "faces.h5", aus.AuConfig(baseline="video"))
    assert np.allclose(base.loc[ok, "AU43"], 0.0, atol=0.02)  # constant per video: removed
    assert base.loc[ok, "AU12"].max() == pytest.approx(0.6, abs=0.08)


def test_bad_faces_file_is_named(tmp_path):
    bad = tmp_path / "faces.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="faces.h5: not a readable HDF5"):
        read_faces(bad)
    with h5py.File(bad, "w") as f:
        f["success"] = np.ones(2, bool)
    with pytest.raises(UserError, match=r"missing dataset\(s\).*landmarks.*detect_faces"):
        read_faces(bad)


def test_config_from_mapping():
    # bad values stop at the schema (tests/test_config_sections.py); this builds the class
    cfg = aus.AuConfig.from_mapping({"backend": "detector", "detector_batch": 8})
    assert (cfg.backend, cfg.detector_batch, cfg.baseline) == ("detector", 8, "none")
    assert cfg.mesh == aus.AuConfig().mesh and cfg.mesh["ridge"] == 30.0


def test_read_frame_table_names_the_file(tmp_path):
    path = tmp_path / "s000.tsv"
    pd.DataFrame({"video_id": ["a"], "x": [1]}).to_csv(path, sep="\t", index=False)
    with pytest.raises(UserError, match="s000.tsv: not a readable AU frame table"):
        aus.read_frame_table(path)
