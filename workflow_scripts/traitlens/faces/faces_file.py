"""The ``faces/<shard>.h5`` format: its dataset names, schema, writer and checked readers.

The one module that knows the file's layout: every other module writes and reads faces
files through the functions here. Only numpy and h5py are imported, so a reader needs
neither mediapipe, cv2 nor torch. The index datasets (video_index, frame_index,
video_id) are the frames file's, copied row for row, under the frames file's names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint, string_dataset
from traitlens.extract.frames_file import FRAME_INDEX, VIDEO_ID, VIDEO_INDEX, FrameIndex, RowKeys

KIND = "faces"  # what error messages call the file
RULE = "detect_faces"  # the rule that writes it

SUCCESS = "success"
REASON = "reason"
N_FACES_SEEN = "n_faces_seen"
SCORE = "score"
BOX = "box"
LANDMARKS = "landmarks"
TRANSFORM = "transform"
ALIGNED = "aligned"
ALIGNED_LANDMARKS = "aligned_landmarks"
# The per-frame datasets the writer fills; the face stage's results carry one attribute
# of the same name each (traitlens.faces.video_faces.VideoFaces)
PER_FRAME = (
    SUCCESS,
    N_FACES_SEEN,
    SCORE,
    BOX,
    LANDMARKS,
    TRANSFORM,
    ALIGNED_LANDMARKS,
    ALIGNED,
    REASON,
)
DATASETS = (*PER_FRAME, VIDEO_INDEX, FRAME_INDEX, VIDEO_ID)
N_LANDMARKS = 478  # mediapipe's face mesh with irises

FACES_SCHEMA = """\
Faces in the frames of one shard (traitlens detect_faces). Row i is row i of
frames/<shard>.h5 (same order). Pixel coordinates: (0, 0) is the centre of the
top-left pixel (OpenCV). Per frame:
  success            bool (n,) a face was found, its landmarks fitted, the crop aligned
  reason             utf-8 string (n,) '' when success, else 'no face' (the detector
                     found none) or 'mesh failed' (the landmark model rejected the face)
  n_faces_seen       int8 (n,) faces the full-range detector found in the frame, the
                     kept one included (0 when none; capped at 127)
  score              float32 (n,) detection score of the kept face; NaN when none
  box                float32 (n, 4) x0, y0, x1, y1 of the kept face's detection box in
                     stored-frame pixels (may reach past the frame); NaN when none
  landmarks          float32 (n, 478, 3) mediapipe face mesh with irises (468-477):
                     x, y stored-frame pixels, z relative depth in the scale of x
                     (smaller = nearer the camera); NaN unless success
  transform          float32 (n, 2, 3) similarity stored-frame pixels -> aligned
                     pixels, [u, v] = T[:, :2] @ [x, y] + T[:, 2]; NaN unless success
  aligned            uint8 (n, S, S, 3) RGB aligned face crop (S = aligned_size),
                     zeros unless success; one per chunk
  aligned_landmarks  float32 (n, 478, 2) landmarks mapped by transform; NaN unless success
  video_index        int32 (n,) copied from the frames file
  frame_index        int32 (n,) copied from the frames file
Per video, row j: video_id utf-8 string (n_videos,) copied from the frames file.
Alignment: the eye centres (mean of each eye's 16 eyelid-contour landmarks) go to
x = S/2 -+ eye_distance*S/2, y = eye_y*S (fractions of the crop, edges at 0 and S),
the subject's right eye on the image left. One face per video: the one most
consistently present over its frames (traitlens.faces.video_faces.choose_main_faces).
Attributes: aligned_size, eye_distance, eye_y, min_detection_confidence,
min_landmark_confidence, created_by, schema."""


class FacesWriter:
    """Preallocated datasets for ``n`` frames, filled video by video; ``attrs`` are
    the attributes after ``schema``, in the order given (created_by, the settings)."""

    def __init__(self, path: str | Path, n: int, size: int, attrs: Mapping[str, object]):
        self.file = h5py.File(path, "w", track_order=False)
        self.file.attrs.update(schema=FACES_SCHEMA, **attrs)
        # the order the datasets are created in is part of the bytes: keep it
        spec = {
            SUCCESS: ((n,), bool),
            N_FACES_SEEN: ((n,), np.int8),
            SCORE: ((n,), np.float32),
            BOX: ((n, 4), np.float32),
            LANDMARKS: ((n, N_LANDMARKS, 3), np.float32),
            TRANSFORM: ((n, 2, 3), np.float32),
            ALIGNED_LANDMARKS: ((n, N_LANDMARKS, 2), np.float32),
        }
        self.ds = {
            name: self.file.create_dataset(name, shape, dtype=dtype, track_times=False)
            for name, (shape, dtype) in spec.items()
        }
        self.ds[ALIGNED] = self.file.create_dataset(
            ALIGNED,
            (n, size, size, 3),
            dtype=np.uint8,
            chunks=(1, size, size, 3) if n else None,
            track_times=False,
        )
        self.ds[REASON] = self.file.create_dataset(
            REASON, (n,), dtype=h5py.string_dtype(), track_times=False
        )

    def copy_index(self, index: FrameIndex) -> None:
        """The frames file's index datasets, row for row."""
        self.file.create_dataset(
            VIDEO_INDEX, data=index.video_index.astype(np.int32), track_times=False
        )
        self.file.create_dataset(
            FRAME_INDEX, data=index.frame_index.astype(np.int32), track_times=False
        )
        string_dataset(self.file, VIDEO_ID, index.video_ids)

    def write(self, rows: np.ndarray, faces: object) -> None:
        """Rows ``rows`` (increasing) from ``faces``, which has one attribute per
        per-frame dataset (:data:`PER_FRAME`)."""
        if not len(rows):
            return
        where = slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] == len(rows) - 1 else rows
        for name, ds in self.ds.items():
            value = getattr(faces, name)
            ds[where] = np.array(value, dtype=object) if name == REASON else value

    def close(self) -> None:
        self.file.close()


# --- readers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceRows:
    """What the AU stage reads from a faces file, one entry per frame row."""

    video_ids: tuple[str, ...]  # per video
    video_index: np.ndarray  # (n,) int
    frame_index: np.ndarray  # (n,) int
    success: np.ndarray  # (n,) bool
    landmarks: np.ndarray  # (n, 478, 3) float32, stored-frame pixels

    def row_video_ids(self) -> np.ndarray:
        return np.asarray(self.video_ids, dtype=object)[self.video_index]


def read_faces(path: str | Path) -> FaceRows:
    """Every row's keys, success and landmarks; UserError naming the file when it is not
    a faces file whose datasets fit together."""
    path = Path(path)
    required = (VIDEO_ID, VIDEO_INDEX, FRAME_INDEX, SUCCESS, LANDMARKS)
    with open_checked(path, KIND, RULE, required) as f:
        rows = FaceRows(
            tuple(as_str(v) for v in f[VIDEO_ID][()]),
            f[VIDEO_INDEX][()].astype(np.int64),
            f[FRAME_INDEX][()].astype(np.int64),
            f[SUCCESS][()].astype(bool),
            f[LANDMARKS][()],
        )
    n = len(rows.frame_index)
    problems = []
    if not (len(rows.video_index) == len(rows.success) == len(rows.landmarks) == n):
        problems.append("per-frame datasets differ in length")
    elif rows.landmarks.ndim != 3 or rows.landmarks.shape[1:] != (N_LANDMARKS, 3):
        problems.append(f"landmarks has shape {rows.landmarks.shape}, expected (n, 478, 3)")
    elif n and (rows.video_index.min() < 0 or rows.video_index.max() >= len(rows.video_ids)):
        problems.append("video_index points past the video_id list")
    if problems:
        raise UserError(f"{path}: {'; '.join(problems)}; {rebuild_hint(path, RULE)}")
    return rows


def read_row_keys(path: str | Path, label: str = KIND) -> RowKeys:
    """The rows with a face (success), their video and frame. ``label``: what error
    messages call the file (the training code says face)."""
    required = [ALIGNED, VIDEO_INDEX, FRAME_INDEX, VIDEO_ID, SUCCESS]
    with open_checked(path, label, RULE, required) as f:
        ids = np.array([as_str(v) for v in f[VIDEO_ID][:]], dtype=object)
        video_index = f[VIDEO_INDEX][:]
        rows = np.flatnonzero(f[SUCCESS][:].astype(bool))
        return RowKeys(rows, ids[video_index[rows]], f[FRAME_INDEX][:][rows])


def open_pixels(path: str | Path, label: str = KIND, **options) -> h5py.Dataset:
    """The aligned crops, uint8 (n, S, S, 3), of a checked, open file, left on disk
    (``options`` go to h5py.File); close it with ``dataset.file.close()``."""
    return open_checked(path, label, RULE, [ALIGNED], **options)[ALIGNED]


@dataclass(frozen=True)
class VideoLandmarkMeans:
    """Each video's face geometry: its aligned landmarks averaged over its frames with a
    face (NaN for a video without one)."""

    video_ids: tuple[str, ...]  # per video, the file's order
    means: np.ndarray  # (n_videos, 478, 2) float64, aligned pixels
    n_frames: np.ndarray  # (n_videos,) int, frames with a face


def read_video_landmark_means(path: str | Path, chunk: int = 4096) -> VideoLandmarkMeans:
    """:class:`VideoLandmarkMeans` of a faces file, read ``chunk`` rows at a time (a
    shard's landmarks need not fit in memory); UserError naming the file when its
    datasets do not fit together."""
    path = Path(path)
    required = (VIDEO_ID, VIDEO_INDEX, SUCCESS, ALIGNED_LANDMARKS)
    with open_checked(path, KIND, RULE, required) as f:
        ids = tuple(as_str(v) for v in f[VIDEO_ID][()])
        video_index = f[VIDEO_INDEX][()].astype(np.int64)
        success = f[SUCCESS][()].astype(bool)
        points = f[ALIGNED_LANDMARKS]
        n = len(video_index)
        if not (len(success) == len(points) == n) or points.shape[1:] != (N_LANDMARKS, 2):
            raise UserError(
                f"{path}: video_index, success and aligned_landmarks do not fit together "
                f"(lengths {n}, {len(success)}, {len(points)}; aligned_landmarks "
                f"{points.shape[1:]}, expected ({N_LANDMARKS}, 2)); {rebuild_hint(path, RULE)}"
            )
        if n and (video_index.min() < 0 or video_index.max() >= len(ids)):
            raise UserError(
                f"{path}: video_index points past the video_id list; {rebuild_hint(path, RULE)}"
            )
        sums = np.zeros((len(ids), N_LANDMARKS, 2))
        counts = np.zeros(len(ids), dtype=np.int64)
        for start in range(0, n, chunk):
            ok = success[start : start + chunk]
            if ok.any():
                rows = video_index[start : start + chunk][ok]
                np.add.at(sums, rows, points[start : start + len(ok)][ok].astype(np.float64))
                np.add.at(counts, rows, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None, None]  # NaN where a video has no face
    return VideoLandmarkMeans(ids, means, counts)


def read_boxes(path: str | Path) -> np.ndarray:
    """float32 (n, 4) detection boxes x0, y0, x1, y1 (NaN where no face was kept)."""
    with open_checked(path, KIND, RULE, [BOX]) as f:
        return f[BOX][:]


class AlignedFaces:
    """The aligned crops and landmarks of a checked, open faces file, read in batches."""

    def __init__(self, path: str | Path):
        self.file = open_checked(path, KIND, RULE, (SUCCESS, ALIGNED, ALIGNED_LANDMARKS))

    @property
    def size(self) -> int:
        """S, the side of the aligned crops in pixels."""
        return self.file[ALIGNED].shape[1]

    def successful(self, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(aligned landmarks (k, 478, 2), crops uint8 (k, S, S, 3)) of the frames with a
        face, ``batch`` rows read at a time (batches without a face are skipped)."""
        success = self.file[SUCCESS][:]
        for start in range(0, len(success), batch):
            ok = success[start : start + batch]
            if not ok.any():
                continue
            rows = slice(start, start + len(ok))
            yield self.file[ALIGNED_LANDMARKS][rows][ok], self.file[ALIGNED][rows][ok]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> AlignedFaces:
        return self

    def __exit__(self, *_) -> None:
        self.close()
