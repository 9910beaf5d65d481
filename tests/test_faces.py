"""Face detection, main-face choice and landmarks: real mediapipe on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.faces.face_landmarks import eye_contours, region_landmarks
from traitlens.faces.mediapipe_face import FaceDetector, LandmarkModel
from traitlens.faces.video_faces import (
    MESH_FAILED,
    NO_FACE,
    FaceParams,
    box_iou,
    choose_main_faces,
    fit_faces,
    process_video,
)

from support.face_photos import astronaut, grace_hopper, no_face_pictures, side_by_side


@pytest.fixture(scope="module")
def models():
    with FaceDetector() as detector, LandmarkModel() as landmarker:
        yield detector, landmarker


def _run(models, frames, **params):
    return process_video(list(frames), *models, FaceParams(**params))


def _centre(points):
    return np.asarray(points).mean(axis=0)


@pytest.mark.media
@pytest.mark.parametrize("photo", [astronaut, grace_hopper], ids=["astronaut", "grace_hopper"])
def test_face_found_with_sane_landmarks(models, photo):
    image = photo()
    faces = _run(models, [image])
    assert faces.success[0] and faces.reason[0] == ""
    assert faces.n_faces_seen[0] == 1 and faces.score[0] > 0.7
    x0, y0, x1, y1 = faces.box[0]
    lms = faces.landmarks[0]
    assert lms.shape == (478, 3) and np.isfinite(lms).all()
    # the mesh sits on the detected face: its centre inside the box, its extent similar
    cx, cy = _centre(lms[:, :2])
    assert x0 < cx < x1 and y0 < cy < y1
    assert 0.6 < np.ptp(lms[:, 0]) / (x1 - x0) < 1.8
    regions = region_landmarks()
    eyes_y = _centre(lms[list(regions["eyes"]), :2])[1]
    brows_y = _centre(lms[list(regions["eyebrows"]), :2])[1]
    mouth_y = _centre(lms[list(regions["mouth"]), :2])[1]
    assert brows_y < eyes_y < mouth_y
    # the subject's right eye is on the image's left (frontal, unmirrored photo)
    right = _centre(lms[list(eye_contours()["right"]), :2])
    left = _centre(lms[list(eye_contours()["left"]), :2])
    assert right[0] < left[0]
    # crops and mapped landmarks are filled for a found face
    assert faces.aligned[0].mean() > 20
    assert np.isfinite(faces.transform[0]).all() and np.isfinite(faces.aligned_landmarks[0]).all()


@pytest.mark.media
def test_pictures_without_a_face_are_flagged(models):
    faces = _run(models, no_face_pictures())
    assert not faces.success.any()
    assert faces.reason == [NO_FACE, NO_FACE]
    assert (faces.n_faces_seen == 0).all()
    assert not faces.aligned.any()
    for name in ("score", "box", "landmarks", "transform", "aligned_landmarks"):
        assert np.isnan(getattr(faces, name)).all(), name


@pytest.mark.media
def test_a_failed_mesh_is_flagged_not_raised(models):
    detector, landmarker = models
    dets = detector.detect(astronaut())
    blank = np.zeros((512, 512, 3), np.uint8)  # the detection points at nothing here
    faces = fit_faces([blank], [dets], [0], landmarker, FaceParams())
    assert not faces.success[0] and faces.reason[0] == MESH_FAILED
    assert faces.n_faces_seen[0] == 1 and np.isfinite(faces.box[0]).all()
    assert np.isnan(faces.landmarks[0]).all() and not faces.aligned[0].any()


@pytest.mark.media
@pytest.mark.parametrize("big", ["left", "right"])
def test_two_faces_keep_the_main_one(models, big):
    # astronaut's face is ~105 px wide, Grace Hopper's ~200 px
    a, b = astronaut(), grace_hopper()
    image = side_by_side(a, b, 0.35) if big == "left" else side_by_side(a, b, 1.0)
    faces = _run(models, [image, image, image])
    assert (faces.n_faces_seen == 2).all() and faces.success.all()
    centre_x = _centre(faces.landmarks[:, :, 0].T)
    assert ((centre_x < a.shape[1]) == (big == "left")).all()


@pytest.mark.media
def test_process_video_handles_no_frames(models):
    faces = _run(models, [], aligned_size=112)
    assert faces.success.shape == (0,) and faces.aligned.shape == (0, 112, 112, 3)


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.0])


def _box(cx, cy, size):
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def test_main_face_is_the_consistent_one_not_a_bigger_passer_by():
    main = _box(100, 100, 50)
    frames = [np.array([main]) for _ in range(5)]
    frames[2] = np.array([_box(300, 100, 120), _box(102, 98, 52)])  # big face passes by
    frames[3] = np.zeros((0, 4))
    assert choose_main_faces(frames) == [0, 0, 1, None, 0]


def test_main_face_ties_go_to_the_larger_face():
    frame = np.array([_box(50, 50, 30), _box(200, 50, 60)])
    assert choose_main_faces([frame, frame]) == [1, 1]


def test_two_faces_in_every_frame_tie_despite_detector_jitter():
    # Both people are there throughout; the smaller face's boxes happen to jitter less,
    # which must not make it the main face (it did when ties had to be exact).
    rng = np.random.default_rng(0)
    frames = [
        np.array([_box(50, 50, 30), _box(200, 50, 60) + rng.normal(0, 1.5, 4)]) for _ in range(10)
    ]
    assert choose_main_faces(frames) == [1] * 10
    # a face missing from a third of the frames is no tie: the consistent one wins
    frames = [np.array([_box(50, 50, 30), _box(200, 50, 60)]) for _ in range(10)]
    frames[:4] = [np.array([_box(50, 50, 30)])] * 4
    assert choose_main_faces(frames) == [0] * 10


def test_a_moved_face_is_followed_by_position_and_size():
    frames = [np.array([_box(100, 100, 50)])] * 3
    # the main face jumped (no overlap); a small face elsewhere is further away
    frames = [*frames, np.array([_box(400, 100, 10), _box(180, 100, 50)])]
    assert choose_main_faces(frames)[-1] == 1
    assert choose_main_faces([]) == []
    assert choose_main_faces([np.zeros((0, 4))]) == [None]


def test_face_params_from_config():
    # bad values stop at the schema (tests/test_config_sections.py); this builds the class
    assert FaceParams.from_mapping(None) == FaceParams()
    p = FaceParams.from_mapping({"aligned_size": 224, "eye_distance": 0.3, "eye_y": 1})
    assert (p.aligned_size, p.eye_distance, p.eye_y) == (224, 0.3, 1.0)
    assert isinstance(p.eye_y, float) and p.as_attrs()["eye_y"] == 1.0
