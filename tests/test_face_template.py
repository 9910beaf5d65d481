"""The semantic face template: mean aligned landmarks, region masks and their figure."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.faces.detect_faces import detect_faces_shard
from traitlens.faces.face_landmarks import REGIONS, closed_loop, paths
from traitlens.faces.face_template import (
    build_face_template,
    load_template,
    region_masks,
    region_polygons,
)
from traitlens.faces.video_faces import FaceParams

from support.face_photos import astronaut, fit, grace_hopper, no_face_pictures, write_frames_h5

S = 96
PARAMS = FaceParams(aligned_size=S)


@pytest.fixture(scope="module")
def faces_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("template")
    a, g = fit(astronaut(), 384, 216), fit(grace_hopper(), 384, 216)
    coffee = fit(no_face_pictures()[0], 384, 216)
    shards = {
        "s000": [("a.001", [a, a[:, ::-1].copy(), coffee])],
        "s001": [("g.001", [g, g[:, ::-1].copy()])],
    }
    out = []
    for shard, videos in shards.items():
        frames = write_frames_h5(root / "frames" / f"{shard}.h5", videos)
        faces = root / "faces" / f"{shard}.h5"
        detect_faces_shard(frames, faces, root / f"{shard}.tsv", PARAMS, progress=False)
        out.append(faces)
    return root, out


@pytest.fixture(scope="module")
def template(faces_files):
    root, files = faces_files
    h5, png = root / "faces" / "template.h5", root / "figures" / "face_regions.png"
    areas = build_face_template(files, h5, png, dilation_px=2)
    return h5, png, areas


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


@pytest.mark.media
def test_template_file(template):
    h5, _, areas = template
    with h5py.File(h5) as f:
        assert f.attrs["n_frames"] == 4  # the coffee cup is left out
        assert f.attrs["aligned_size"] == S and f.attrs["region_dilation_px"] == 2
        for name in ("mean_landmarks", "mean_face", "masks", "region_names"):
            assert name in f.attrs["schema"]
        assert f["mean_face"].shape == (S, S, 3) and f["mean_face"].dtype == np.uint8
    lms, face, masks, names = load_template(h5)
    assert face.shape == (S, S, 3) and face.dtype == np.uint8
    assert names == list(REGIONS)
    assert lms.shape == (478, 2) and np.isfinite(lms).all()
    assert masks.shape == (4, S, S) and masks.dtype == bool
    assert areas == {name: int(m.sum()) for name, m in zip(names, masks, strict=True)}


@pytest.mark.media
def test_regions_are_where_a_face_has_them(template):
    _, _, masks, names = load_template(template[0])
    m = dict(zip(names, masks, strict=True))
    for name, mask in m.items():
        assert mask.sum() > 0.002 * S * S, name
    assert masks.sum(axis=0).max() == 1  # disjoint
    y = {name: _centroid(mask)[1] for name, mask in m.items()}
    assert y["eyebrows"] < y["eyes"] < y["nose"] < y["mouth"]
    # eyes and brows come in pairs either side of the midline; nose and mouth on it
    for name in ("eyebrows", "eyes"):
        xs = np.nonzero(m[name])[1]
        assert (xs < S / 2).sum() > 0.4 * len(xs) and (xs > S / 2).sum() > 0.4 * len(xs)
        assert not m[name][:, S // 2].any()
    for name in ("nose", "mouth"):
        assert abs(_centroid(m[name])[0] - (S - 1) / 2) < 0.05 * S
    # the eye region holds the eye centres the alignment placed
    eye_y = round(PARAMS.eye_y * S - 0.5)
    for x in (S / 2 - PARAMS.eye_distance * S / 2, S / 2 + PARAMS.eye_distance * S / 2):
        assert m["eyes"][eye_y, round(x - 0.5)]


@pytest.mark.media
def test_figure_is_written(template):
    _, png, _ = template
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


@pytest.mark.media
def test_dilation_grows_masks_and_keeps_them_disjoint(template):
    lms, _, _, _ = load_template(template[0])
    core = region_masks(lms, S, 0)
    grown = region_masks(lms, S, 5)
    assert (grown.sum(axis=(1, 2)) > core.sum(axis=(1, 2))).all()
    assert grown.sum(axis=0).max() == 1
    assert (grown | ~core).all()  # a region keeps its own polygon
    polys = region_polygons(lms)
    assert [len(polys[name]) for name in REGIONS] == [2, 2, 1, 1]


@pytest.mark.media
def test_no_face_anywhere_is_a_clear_error(tmp_path):
    rocket = fit(no_face_pictures()[1], 96, 64)
    frames = write_frames_h5(tmp_path / "frames.h5", [("c.001", [rocket])])
    faces = tmp_path / "faces.h5"
    detect_faces_shard(frames, faces, tmp_path / "qc.tsv", PARAMS, progress=False)
    with pytest.raises(UserError, match="no face was found"):
        build_face_template([faces], tmp_path / "t.h5", tmp_path / "f.png", 2)
    assert not (tmp_path / "t.h5").exists()


@pytest.mark.media
def test_mixed_crop_sizes_and_broken_files_are_clear_errors(faces_files, tmp_path):
    _, files = faces_files
    other = tmp_path / "s009.h5"
    with h5py.File(files[0]) as src, h5py.File(other, "w") as f:
        f["success"] = src["success"][:]
        f["aligned"] = np.zeros((len(src["success"]), 32, 32, 3), np.uint8)
        f["aligned_landmarks"] = src["aligned_landmarks"][:]
    with pytest.raises(UserError, match="same faces.aligned_size"):
        build_face_template([files[0], other], tmp_path / "t.h5", tmp_path / "f.png", 2)
    broken = tmp_path / "s010.h5"
    with h5py.File(broken, "w") as f:
        f["success"] = np.ones(1, bool)
    with pytest.raises(UserError, match=r"s010\.h5: missing dataset.*detect_faces"):
        build_face_template([broken], tmp_path / "t.h5", tmp_path / "f.png", 2)


def test_paths_split_edge_sets():
    [(loop, closed)] = paths({(1, 2), (2, 3), (3, 1)})
    assert closed and loop[0] == 1 and sorted(loop) == [1, 2, 3]
    assert sorted(paths({(5, 6), (6, 7), (1, 2)})) == [((1, 2), False), ((5, 6, 7), False)]
    assert set(closed_loop({(4, 5), (5, 6), (6, 7), (7, 4)})) == {4, 5, 6, 7}
    with pytest.raises(ValueError, match="branches"):
        paths({(1, 2), (1, 3), (1, 4)})
