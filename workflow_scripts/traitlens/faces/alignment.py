"""Face alignment as in the paper: a similarity from the two eye centres.

The eyes go to fixed places in an S x S crop: level, ``eye_distance * S`` apart,
centred horizontally, on the line ``y = eye_y * S``. Fractions are of the crop's extent
(edges at 0 and S); the returned 2x3 matrices work in pixel-centre coordinates
((0, 0) = centre of the top-left pixel), which is what ``cv2.warpAffine`` uses.
"""

from __future__ import annotations

import cv2
import numpy as np

from traitlens.faces.face_landmarks import eye_contours


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """(2, 2): the subject's right eye centre (image left), then the left eye's: the
    mean of each eye's eyelid-contour landmarks."""
    contours = eye_contours()
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return np.stack([pts[list(contours[side])].mean(axis=0) for side in ("right", "left")])


def target_eyes(size: int, eye_distance: float, eye_y: float) -> np.ndarray:
    """(2, 2) where the right and left eye centres land in the aligned crop (pixels)."""
    half = eye_distance * size / 2.0
    y = eye_y * size - 0.5
    cx = size / 2.0 - 0.5
    return np.array([[cx - half, y], [cx + half, y]])


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) sending the two points
    ``src`` exactly onto ``dst``: z -> a z + b with complex a, b."""
    p = np.asarray(src, dtype=np.float64) @ [1, 1j]
    q = np.asarray(dst, dtype=np.float64) @ [1, 1j]
    if abs(p[1] - p[0]) < 1e-9:
        raise ValueError("the two source points coincide")
    a = (q[1] - q[0]) / (p[1] - p[0])
    b = q[0] - a * p[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def alignment_transform(
    landmarks: np.ndarray, size: int, eye_distance: float, eye_y: float
) -> np.ndarray:
    """2x3 similarity, frame pixels -> aligned-crop pixels, from the face's landmarks."""
    return similarity_from_points(eye_centres(landmarks), target_eyes(size, eye_distance, eye_y))


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine matrix."""
    pts = np.asarray(points, dtype=np.float64)[..., :2]
    return pts @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def transform_scale(matrix: np.ndarray) -> float:
    """The uniform scale of a 2x3 similarity."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The aligned S x S crop of ``image`` (black outside the frame).

    warpAffine samples bilinearly, which aliases when it shrinks by more than 2x (a
    720p face to a 112-px crop is ~3x): the region the crop sees is first shrunk with
    area averaging so that the warp itself scales by about 1.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = transform_scale(matrix)
    if scale < 0.5:
        image, matrix = _shrink_source(image, matrix, size, scale)
    return cv2.warpAffine(
        image,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def _shrink_source(image, matrix, size, scale):
    """Cut the crop's preimage (+ margin) out of ``image``, shrink it k times (k the
    whole number with scale * k in (0.5, 1]: OpenCV's fast integer area filter), and
    return it with the matrix that maps its pixels into the crop."""
    h, w = image.shape[:2]
    k = int(1.0 / scale)
    inverse = cv2.invertAffineTransform(matrix)
    corners = apply_affine(np.array([[-1, -1], [size, -1], [-1, size], [size, size]]), inverse)
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - k, 0, [w, h])
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + k, 0, [w, h])
    x1, y1 = x0 + (x1 - x0) // k * k, y0 + (y1 - y0) // k * k  # whole k x k blocks
    if x1 - x0 < k or y1 - y0 < k:  # the crop sees (almost) nothing of the frame
        return image, matrix
    out = ((x1 - x0) // k, (y1 - y0) // k)
    small = cv2.resize(image[y0:y1, x0:x1], out, interpolation=cv2.INTER_AREA)
    # small pixel (u, v) is the mean of source pixels k*u .. k*u + k-1 (+ x0, y0)
    back = np.array([[k, 0, (k - 1) / 2 + x0], [0, k, (k - 1) / 2 + y0]], dtype=np.float64)
    return small, matrix @ np.vstack([back, [0, 0, 1]])


def eye_line_angle_deg(landmarks: np.ndarray) -> float:
    """Angle of the line from the right to the left eye centre (0 = level, image y down)."""
    right, left = eye_centres(landmarks)
    dx, dy = left - right
    return float(np.degrees(np.arctan2(dy, dx)))
