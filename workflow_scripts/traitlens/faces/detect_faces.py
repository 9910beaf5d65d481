"""The face stage of one shard: frames/<shard>.h5 -> faces/<shard>.h5 + qc/faces/<shard>.tsv.

Streaming: one video at a time, at most ``batch`` frames in memory (a longer video is
read twice: once to detect, once to fit, because the main face is chosen over all of
its frames). Outputs are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import UserError
from traitlens.core.faults import kill_point
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint
from traitlens.faces.faces_qc import video_qc_row, write_face_qc
from traitlens.faces.mediapipe_face import FaceDetector, LandmarkModel, mediapipe_version
from traitlens.faces.video_faces import (
    FaceParams,
    VideoFaces,
    choose_main_faces,
    detect_all,
    fit_faces,
)

log = logging.getLogger("traitlens.faces.video_faces")

REQUIRED_FRAME_DATASETS = ("frames", "video_index", "frame_index", "video_id")

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


def open_frames(path: str | Path) -> h5py.File:
    """Open a frames/<shard>.h5 file, checking it has what the face stage reads."""
    path = Path(path)
    f = open_checked(path, "frames", "extract_shard", REQUIRED_FRAME_DATASETS)
    problem = _shape_problem(f)
    if problem:
        f.close()
        raise UserError(f"{path}: {problem}; {rebuild_hint(path, 'extract_shard')}")
    return f


def _shape_problem(f: h5py.File) -> str:
    frames, video_index = f["frames"], f["video_index"]
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        return f"frames is {frames.shape} {frames.dtype}, expected (n, H, W, 3) uint8"
    n, n_videos = frames.shape[0], f["video_id"].shape[0]
    if video_index.shape != (n,) or f["frame_index"].shape != (n,):
        return "video_index / frame_index do not have one entry per frame"
    vi = video_index[:]
    if n and (vi.min() < 0 or vi.max() >= n_videos):
        return f"video_index points outside the {n_videos} videos"
    return ""


def video_rows(video_index: np.ndarray, n_videos: int) -> list[np.ndarray]:
    """Row numbers of each video's frames, in file order."""
    order = np.argsort(video_index, kind="stable")
    bounds = np.searchsorted(video_index[order], np.arange(n_videos + 1))
    return [np.sort(order[bounds[j] : bounds[j + 1]]) for j in range(n_videos)]


def _read(frames: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:  # contiguous: one slice
        return frames[rows[0] : rows[-1] + 1]
    return frames[rows] if len(rows) else frames[0:0]


def _chunks(rows: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    for start in range(0, len(rows), batch):
        yield rows[start : start + batch]


class _FacesWriter:
    """Preallocated output datasets, filled video by video."""

    def __init__(self, path: Path, n: int, size: int, params: FaceParams):
        self.file = h5py.File(path, "w", track_order=False)
        self.file.attrs.update(
            schema=FACES_SCHEMA,
            created_by=f"traitlens.faces.video_faces with mediapipe {mediapipe_version()}",
            **{k: v for k, v in params.as_attrs().items() if k != "region_dilation_px"},
        )
        spec = {
            "success": ((n,), bool),
            "n_faces_seen": ((n,), np.int8),
            "score": ((n,), np.float32),
            "box": ((n, 4), np.float32),
            "landmarks": ((n, 478, 3), np.float32),
            "transform": ((n, 2, 3), np.float32),
            "aligned_landmarks": ((n, 478, 2), np.float32),
        }
        self.ds = {
            name: self.file.create_dataset(name, shape, dtype=dtype, track_times=False)
            for name, (shape, dtype) in spec.items()
        }
        self.ds["aligned"] = self.file.create_dataset(
            "aligned",
            (n, size, size, 3),
            dtype=np.uint8,
            chunks=(1, size, size, 3) if n else None,
            track_times=False,
        )
        self.ds["reason"] = self.file.create_dataset(
            "reason", (n,), dtype=h5py.string_dtype(), track_times=False
        )

    def write(self, rows: np.ndarray, faces: VideoFaces) -> None:
        if not len(rows):
            return
        where = slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] == len(rows) - 1 else rows
        for name, ds in self.ds.items():
            value = getattr(faces, name)
            ds[where] = np.array(value, dtype=object) if name == "reason" else value

    def copy_index(self, frames_file: h5py.File) -> None:
        for name in ("video_index", "frame_index"):
            data = frames_file[name][:].astype(np.int32)
            self.file.create_dataset(name, data=data, track_times=False)
        ids = np.array([as_str(v) for v in frames_file["video_id"][:]], dtype=object)
        self.file.create_dataset("video_id", data=ids, dtype=h5py.string_dtype(), track_times=False)


def detect_faces_shard(
    frames_path: str | Path,
    faces_out: str | Path,
    qc_out: str | Path,
    params: FaceParams,
    batch: int = 64,
    progress: bool = True,
    models: tuple[FaceDetector, LandmarkModel] | None = None,
) -> list[dict[str, object]]:
    """Run the face stage over one shard's frames file; returns the QC rows.

    ``models`` lets a caller that runs many shards (tests, the benchmark) build the
    mediapipe graphs once; by default they are built from ``params``.
    """
    import cv2

    cv2.setNumThreads(1)  # one core per job: the rule asks for one thread
    frames_path = Path(frames_path)
    with contextlib.ExitStack() as stack:
        if models is None:
            models = (
                stack.enter_context(FaceDetector(params.min_detection_confidence)),
                stack.enter_context(LandmarkModel(params.min_landmark_confidence)),
            )
        src = stack.enter_context(open_frames(frames_path))
        tmp = stack.enter_context(atomic_path(faces_out))
        qc_rows = _write_faces(src, tmp, params, models, batch, progress)
    write_face_qc(qc_out, qc_rows)
    n_ok = sum(int(r["n_faces"]) for r in qc_rows)
    n = sum(int(r["n_frames"]) for r in qc_rows)
    log.info("%s: a face in %d of %d frames, %d videos", frames_path.name, n_ok, n, len(qc_rows))
    return qc_rows


def _write_faces(src: h5py.File, out: Path, params, models, batch, progress) -> list[dict]:
    """Fill the faces file ``out`` video by video; returns the QC rows."""
    frames = src["frames"]
    n = frames.shape[0]
    ids = [as_str(v) for v in src["video_id"][:]]
    qc_rows = []
    writer = _FacesWriter(out, n, params.aligned_size, params)
    try:
        writer.copy_index(src)
        bar = tqdm(total=n, desc="faces", unit="frame", file=sys.stderr, disable=not progress)
        for video_id, rows in zip(ids, video_rows(src["video_index"][:], len(ids)), strict=True):
            success, seen, reasons = [], [], []
            for chunk, part in _video_parts(frames, rows, *models, params, batch):
                writer.write(chunk, part)
                success.append(part.success)
                seen.append(part.n_faces_seen)
                reasons += part.reason
                bar.update(len(chunk))
                kill_point("detect_faces")
            qc_rows.append(
                video_qc_row(video_id, _cat(success, bool), _cat(seen, np.int8), reasons)
            )
        bar.close()
    finally:
        writer.file.close()
    return qc_rows


def _video_parts(
    frames, rows, detector, landmarker, params, batch
) -> Iterator[tuple[np.ndarray, VideoFaces]]:
    """One video's faces as (rows, results) parts, at most ``batch`` frames in memory."""
    cached = _read(frames, rows) if len(rows) <= batch else None
    chunks = [rows] if cached is not None else list(_chunks(rows, batch))

    def images(chunk):
        return cached if cached is not None else _read(frames, chunk)

    detections = [dets for chunk in chunks for dets in detect_all(detector, images(chunk))]
    chosen = choose_main_faces([np.array([d.box for d in dets]) for dets in detections])
    start = 0
    for chunk in chunks:
        stop = start + len(chunk)
        dets, picks = detections[start:stop], chosen[start:stop]
        yield chunk, fit_faces(images(chunk), dets, picks, landmarker, params)
        start = stop


def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)
