"""Each video's mean aligned landmarks read from a faces file
(traitlens.faces.faces_file.read_video_landmark_means): frames without a face are left
out, the chunked read gives the same means, and a file whose datasets do not fit is
refused naming the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.core.h5checks import string_dataset
from traitlens.extract.frames_file import VIDEO_ID, VIDEO_INDEX
from traitlens.faces.faces_file import (
    ALIGNED_LANDMARKS,
    SUCCESS,
    read_video_landmark_means,
)


def write_faces(path, video_index, success, points, ids=("a.000", "b.000", "c.000")):
    with h5py.File(path, "w") as f:
        string_dataset(f, VIDEO_ID, list(ids))
        f[VIDEO_INDEX] = np.asarray(video_index, dtype=np.int32)
        f[SUCCESS] = np.asarray(success, dtype=bool)
        f[ALIGNED_LANDMARKS] = np.asarray(points, dtype=np.float32)
    return path


@pytest.fixture()
def faces(tmp_path):
    rng = np.random.default_rng(0)
    video_index = [0, 0, 0, 1, 1, 0, 2, 2]
    success = [1, 1, 0, 1, 1, 1, 0, 0]  # video c has no face
    points = rng.uniform(0, 112, (8, 478, 2))
    points[~np.asarray(success, bool)] = np.nan  # as the writer stores a failed frame
    return write_faces(tmp_path / "s0.h5", video_index, success, points), points


def test_means_over_the_frames_with_a_face(faces):
    path, points = faces
    got = read_video_landmark_means(path)
    assert got.video_ids == ("a.000", "b.000", "c.000")
    assert list(got.n_frames) == [3, 2, 0]
    assert np.allclose(got.means[0], points[[0, 1, 5]].mean(axis=0), atol=1e-4)
    assert np.allclose(got.means[1], points[[3, 4]].mean(axis=0), atol=1e-4)
    assert np.isnan(got.means[2]).all()


def test_the_chunked_read_gives_the_same_means(faces):
    path, _ = faces
    whole, chunked = read_video_landmark_means(path), read_video_landmark_means(path, chunk=3)
    assert np.array_equal(whole.means, chunked.means, equal_nan=True)
    assert np.array_equal(whole.n_frames, chunked.n_frames)


def test_datasets_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    short = write_faces(tmp_path / "short.h5", [0, 1], [1, 1, 1], np.zeros((3, 478, 2)))
    with pytest.raises(UserError, match="short.h5: video_index, success and aligned"):
        read_video_landmark_means(short)
    past = write_faces(tmp_path / "past.h5", [0, 5], [1, 1], np.zeros((2, 478, 2)))
    with pytest.raises(UserError, match="past.h5: video_index points past"):
        read_video_landmark_means(past)
    with h5py.File(tmp_path / "bare.h5", "w") as f:
        f[SUCCESS] = np.ones(2, bool)
    with pytest.raises(UserError, match="bare.h5: missing dataset"):
        read_video_landmark_means(tmp_path / "bare.h5")
