"""Faces of one video's frames: detect, keep the video's main face, landmarks, align.

Per frame: mediapipe's full-range face detector finds every face; the face kept is the
one that matches the video's main face (:func:`choose_main_faces`); mediapipe's landmark
model fits 478 landmarks inside that face's detection; a similarity from the two eye
centres aligns the face into an S x S crop (:mod:`traitlens.faces.alignment`).

Why this and not ``solutions.face_mesh`` alone: our frames are 10 per video, ~1.5 s
apart, so video-mode tracking has no previous frame to follow, and face mesh's own
short-range detector misses faces smaller than about a fifth of a 720p frame (measured
in bench/README.md, face stage: 41 of 150 found, against 150 of 150 here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from traitlens.core.config import from_section
from traitlens.faces.alignment import alignment_transform, apply_affine, warp_face
from traitlens.faces.face_landmarks import N_LANDMARKS
from traitlens.faces.mediapipe_face import Detection, FaceDetector, LandmarkModel

NO_FACE = "no face"
MESH_FAILED = "mesh failed"
# Main-face supports within this fraction of the best count as a tie (choose_main_faces)
SUPPORT_TIE = 0.1


@dataclass(frozen=True)
class FaceParams:
    """The ``faces:`` config section (see schemas/config.schema.yaml)."""

    aligned_size: int = 224
    eye_distance: float = 0.30
    eye_y: float = 0.36
    min_detection_confidence: float = 0.5
    min_landmark_confidence: float = 0.5
    region_dilation_px: int = 4

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> FaceParams:
        """From the validated ``faces:`` section."""
        return from_section(cls, cfg, "faces")

    def as_attrs(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of ``a`` (n, 4) and of ``b`` (m, 4): (n, m)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def choose_main_faces(boxes: Sequence[np.ndarray]) -> list[int | None]:
    """Per frame of one video, which of its face boxes (k_i, 4) is the video's main face.

    The main face is the box most consistently present: its support is the sum over
    the video's frames of the best IoU with that frame's boxes (a face in every frame
    beats a bigger one that passes by once); supports within ``SUPPORT_TIE`` of the
    best are a tie, and ties go to the larger box. Each frame then
    keeps its box most like the main one: the highest IoU, else (it moved away) the
    nearest centre relative to its size. None for a frame without boxes.
    """
    boxes = [np.asarray(b, float).reshape(-1, 4) for b in boxes]
    pool = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    if len(pool) == 0:
        return [None] * len(boxes)
    support = sum(box_iou(pool, b).max(axis=1) for b in boxes if len(b))
    area = np.prod(np.clip(pool[:, 2:] - pool[:, :2], 0, None), axis=1)
    # Two people in every frame both reach nearly full support; the detector's sub-pixel
    # jitter must not pick between them: the larger (nearer) face is the subject.
    tied = np.flatnonzero(support >= (1 - SUPPORT_TIE) * support.max())
    main = pool[tied[np.lexsort((-support[tied], -area[tied]))[0]]]
    size = max(float(np.sqrt(np.prod(main[2:] - main[:2]))), 1e-6)
    centre = (main[:2] + main[2:]) / 2
    chosen: list[int | None] = []
    for b in boxes:
        if not len(b):
            chosen.append(None)
            continue
        iou = box_iou(b, main[None])[:, 0]
        dist = np.hypot(*((b[:, :2] + b[:, 2:]) / 2 - centre).T) / size
        chosen.append(int(np.lexsort((dist, -iou))[0]))
    return chosen


@dataclass
class VideoFaces:
    """The face stage's per-frame results for n frames (the faces HDF5 datasets)."""

    success: np.ndarray  # (n,) bool
    reason: list[str]
    n_faces_seen: np.ndarray  # (n,) int8
    score: np.ndarray  # (n,) float32
    box: np.ndarray  # (n, 4) float32
    landmarks: np.ndarray  # (n, 478, 3) float32
    transform: np.ndarray  # (n, 2, 3) float32
    aligned: np.ndarray  # (n, S, S, 3) uint8
    aligned_landmarks: np.ndarray  # (n, 478, 2) float32

    @classmethod
    def empty(cls, n: int, size: int) -> VideoFaces:
        """n frames with no face: flags False, NaN geometry, black crops."""
        return cls(
            success=np.zeros(n, bool),
            reason=[NO_FACE] * n,
            n_faces_seen=np.zeros(n, np.int8),
            score=np.full(n, np.nan, np.float32),
            box=np.full((n, 4), np.nan, np.float32),
            landmarks=np.full((n, N_LANDMARKS, 3), np.nan, np.float32),
            transform=np.full((n, 2, 3), np.nan, np.float32),
            aligned=np.zeros((n, size, size, 3), np.uint8),
            aligned_landmarks=np.full((n, N_LANDMARKS, 2), np.nan, np.float32),
        )


def detect_all(detector: FaceDetector, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
    return [detector.detect(frame) for frame in frames]


def fit_faces(
    frames: Sequence[np.ndarray],
    detections: Sequence[Sequence[Detection]],
    chosen: Sequence[int | None],
    landmarker: LandmarkModel,
    params: FaceParams,
) -> VideoFaces:
    """Landmarks and alignment of the chosen face of every frame."""
    out = VideoFaces.empty(len(frames), params.aligned_size)
    for i, (frame, dets, k) in enumerate(zip(frames, detections, chosen, strict=True)):
        out.n_faces_seen[i] = min(len(dets), 127)
        if k is None:
            continue
        det = dets[k]
        out.score[i], out.box[i] = det.score, det.box
        lms = landmarker.landmarks(frame, det)
        if lms is None:
            out.reason[i] = MESH_FAILED
            continue
        matrix = alignment_transform(lms, params.aligned_size, params.eye_distance, params.eye_y)
        out.success[i], out.reason[i] = True, ""
        out.landmarks[i] = lms
        out.transform[i] = matrix
        out.aligned[i] = warp_face(frame, matrix, params.aligned_size)
        out.aligned_landmarks[i] = apply_affine(lms, matrix)
    return out


def process_video(
    frames: Sequence[np.ndarray],
    detector: FaceDetector,
    landmarker: LandmarkModel,
    params: FaceParams,
) -> VideoFaces:
    """All frames of one video (RGB uint8) in memory: detect, choose, fit, align."""
    detections = detect_all(detector, frames)
    chosen = choose_main_faces([np.array([d.box for d in dets]) for dets in detections])
    return fit_faces(frames, detections, chosen, landmarker, params)
