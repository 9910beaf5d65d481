"""Alignment: the similarity from the eye centres, the warp, and real rotated faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from traitlens.faces.alignment import (
    alignment_transform,
    apply_affine,
    eye_centres,
    eye_line_angle_deg,
    similarity_from_points,
    target_eyes,
    transform_scale,
    warp_face,
)
from traitlens.faces.face_landmarks import eye_contours
from traitlens.faces.mediapipe_face import FaceDetector, LandmarkModel
from traitlens.faces.video_faces import FaceParams, process_video

from support.face_photos import astronaut, grace_hopper, rotate

# Crops large enough, with the face small enough in them, for mediapipe to find the face
# again in the aligned crop: the independent check of where the eyes really landed.
CHECK = FaceParams(aligned_size=256, eye_distance=0.25, eye_y=0.42)


@pytest.fixture(scope="module")
def models():
    with FaceDetector() as detector, LandmarkModel() as landmarker:
        yield detector, landmarker


def test_similarity_sends_the_points_exactly():
    src = np.array([[10.0, 20.0], [50.0, 5.0]])
    dst = np.array([[30.0, 40.0], [70.0, 40.0]])
    m = similarity_from_points(src, dst)
    np.testing.assert_allclose(apply_affine(src, m), dst, atol=1e-9)
    # a similarity: orthogonal linear part with one scale
    lin = m[:, :2] / transform_scale(m)
    np.testing.assert_allclose(lin @ lin.T, np.eye(2), atol=1e-12)
    with pytest.raises(ValueError, match="coincide"):
        similarity_from_points(np.zeros((2, 2)), dst)


def test_target_eyes_follow_the_config():
    eyes = target_eyes(112, 0.3, 0.36)
    # fractions of the crop (edges at 0 and S), in pixel-centre coordinates
    np.testing.assert_allclose(eyes[1, 0] - eyes[0, 0], 0.3 * 112)
    np.testing.assert_allclose(eyes[:, 1], 0.36 * 112 - 0.5)
    np.testing.assert_allclose(eyes[:, 0].mean(), 112 / 2 - 0.5)


def test_eye_centres_are_the_eyelid_contour_means():
    rng = np.random.default_rng(0)
    lms = rng.normal(size=(478, 3)) * 100
    right, left = eye_centres(lms)
    np.testing.assert_allclose(right, lms[list(eye_contours()["right"]), :2].mean(axis=0))
    np.testing.assert_allclose(left, lms[list(eye_contours()["left"]), :2].mean(axis=0))
    assert len(eye_contours()["right"]) == len(eye_contours()["left"]) == 16


@pytest.mark.parametrize("scale", [1.5, 0.8, 0.2])  # 0.2 takes the area-shrink path
def test_warp_puts_image_content_where_the_transform_says(scale):
    h, w = 900, 1200
    image = np.zeros((h, w, 3), np.uint8)
    src = np.array([[500.0, 400.0], [500.0 + 40 / scale, 430.0]])
    for x, y in src:
        cv2.circle(image, (round(x), round(y)), max(2, round(3 / scale)), (255, 255, 255), -1)
    size = 112
    dst = target_eyes(size, 40 / size, 0.4)
    m = similarity_from_points(src, dst)
    crop = warp_face(image, m, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    for x, y in dst:
        x0, y0 = int(x) - 6, int(y) - 6
        patch = crop[y0 : y0 + 14, x0 : x0 + 14, 0].astype(float)
        yy, xx = np.mgrid[y0 : y0 + 14, x0 : x0 + 14]
        spot = np.array([(patch * xx).sum(), (patch * yy).sum()]) / patch.sum()
        assert np.hypot(*(spot - (x, y))) < 0.75, (spot, (x, y))


def test_a_crop_outside_the_frame_is_black():
    image = np.full((100, 100, 3), 200, np.uint8)
    m = np.array([[0.1, 0, -500.0], [0, 0.1, -500.0]])
    assert not warp_face(image, m, 64).any()


def _eyes_in_crop(models, crop):
    """Eye centres that mediapipe finds again in an aligned crop."""
    found = process_video([crop], *models, CHECK)
    assert found.success[0], "mediapipe lost the face in the aligned crop"
    return eye_centres(found.landmarks[0])


@pytest.mark.media
@pytest.mark.parametrize("photo", [astronaut, grace_hopper], ids=["astronaut", "grace_hopper"])
def test_eyes_land_where_the_config_says(models, photo):
    faces = process_video([photo()], *models, CHECK)
    assert faces.success[0]
    target = target_eyes(CHECK.aligned_size, CHECK.eye_distance, CHECK.eye_y)
    # the stored mapped landmarks put the eyes on target by construction ...
    np.testing.assert_allclose(eye_centres(faces.aligned_landmarks[0]), target, atol=1e-3)
    # ... and the pixels agree: mediapipe finds the eyes there again in the crop
    again = _eyes_in_crop(models, faces.aligned[0])
    assert np.hypot(*(again - target).T).max() < 2.0


@pytest.mark.media
def test_a_rotated_face_comes_out_level(models):
    image = rotate(astronaut(), 25)
    faces = process_video([image], *models, CHECK)
    assert faces.success[0]
    # in the frame the eye line is tilted by ~25 degrees (counter-clockwise rotation
    # lifts the image's right side: negative angle with y pointing down)
    assert eye_line_angle_deg(faces.landmarks[0]) == pytest.approx(-25, abs=4)
    again = _eyes_in_crop(models, faces.aligned[0])
    dx, dy = again[1] - again[0]
    assert abs(np.degrees(np.arctan2(dy, dx))) < 2.0


def test_alignment_transform_matches_the_targets():
    rng = np.random.default_rng(1)
    lms = rng.uniform(100, 300, size=(478, 3))
    m = alignment_transform(lms, 224, 0.3, 0.36)
    np.testing.assert_allclose(
        eye_centres(apply_affine(lms, m)), target_eyes(224, 0.3, 0.36), atol=1e-9
    )
