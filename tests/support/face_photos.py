"""Real photos for the face-stage tests, and a frames/<shard>.h5 writer for them.

The photos ship with installed packages (nothing is downloaded): scikit-image's
astronaut (Eileen Collins) and matplotlib's Grace Hopper as faces; scikit-image's
coffee cup and rocket launch as pictures without a face.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import h5py
import numpy as np


def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


def grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        buf = np.frombuffer(fh.read(), dtype=np.uint8)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def no_face_pictures() -> list[np.ndarray]:
    import skimage.data

    return [skimage.data.coffee(), skimage.data.rocket()]


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled into width x height with its aspect kept, centred, black padding
    (what extraction does to a video frame)."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    out = np.zeros((height, width, 3), np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def side_by_side(left: np.ndarray, right: np.ndarray, right_scale: float = 1.0) -> np.ndarray:
    """Two photos on one grey canvas, ``right`` scaled by ``right_scale``."""
    if right_scale != 1.0:
        f = right_scale
        right = cv2.resize(right, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    h = max(left.shape[0], right.shape[0])
    canvas = np.full((h, left.shape[1] + right.shape[1], 3), 128, np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] :] = right
    return canvas


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` rotated counter-clockwise by ``degrees`` about its centre, on a canvas
    large enough to keep all of it (grey corners)."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    matrix[:, 2] += ((nw - 1) / 2 - (w - 1) / 2, (nh - 1) / 2 - (h - 1) / 2)
    return cv2.warpAffine(image, matrix, (nw, nh), borderValue=(128, 128, 128))


def write_frames_h5(
    path: Path,
    videos: Sequence[tuple[str, Sequence[np.ndarray]]],
    interleave: bool = False,
) -> Path:
    """A frames/<shard>.h5 as extract_shard writes it (datasets and dtypes), from
    (video_id, frames) pairs. ``interleave`` mixes the videos' rows (round robin) so
    that a reader cannot assume each video's rows are contiguous."""
    rows = [(j, k, frame) for j, (_, frames) in enumerate(videos) for k, frame in enumerate(frames)]
    if interleave:
        rows.sort(key=lambda r: (r[1], r[0]))
    h, w = rows[0][2].shape[:2] if rows else (32, 32)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs.update(schema="test frames", frames_per_video=10, frame_width=w, frame_height=h)
        data = np.stack([r[2] for r in rows]) if rows else np.zeros((0, h, w, 3), np.uint8)
        f.create_dataset("frames", data=data, chunks=(1, h, w, 3) if rows else None)
        f.create_dataset("video_index", data=np.array([r[0] for r in rows], np.int32))
        f.create_dataset("frame_index", data=np.array([r[1] for r in rows], np.int32))
        f.create_dataset("timestamp_s", data=np.array([r[1] / 30 for r in rows], np.float64))
        ids = np.array([v for v, _ in videos], dtype=object)
        f.create_dataset("video_id", data=ids, dtype=h5py.string_dtype())
        boxes = np.tile([0, 0, w, h], (len(videos), 1)).astype(np.int32)
        f.create_dataset("content_box", data=boxes)
    return path
