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
from traitlens.core.faults import kill_point
from traitlens.extract.frames_file import frame_pixels, open_frames, read_index
from traitlens.faces.faces_file import FacesWriter
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
    frames = frame_pixels(src)
    n = frames.shape[0]
    index = read_index(src)
    ids = index.video_ids
    qc_rows = []
    attrs = {
        "created_by": f"traitlens.faces.video_faces with mediapipe {mediapipe_version()}",
        **{k: v for k, v in params.as_attrs().items() if k != "region_dilation_px"},
    }
    writer = FacesWriter(out, n, params.aligned_size, attrs)
    try:
        writer.copy_index(index)
        bar = tqdm(total=n, desc="faces", unit="frame", file=sys.stderr, disable=not progress)
        for video_id, rows in zip(ids, video_rows(index.video_index, len(ids)), strict=True):
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
        writer.close()
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
