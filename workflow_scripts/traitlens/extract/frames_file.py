"""The ``frames/<shard>.h5`` format: its dataset names, schema, writer and checked readers.

The one module that knows the file's layout: every other module writes and reads frames
files through the functions here. Only numpy and h5py are imported, so a reader needs
neither ffmpeg nor torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint, string_dataset

KIND = "frames"  # what error messages call the file
RULE = "extract_shard"  # the rule that writes it

# Per frame (row i)
FRAMES = "frames"
VIDEO_INDEX = "video_index"
FRAME_INDEX = "frame_index"
TIMESTAMP_S = "timestamp_s"
# Per video (row j)
VIDEO_ID = "video_id"
CONTENT_BOX = "content_box"
DATASETS = (FRAMES, VIDEO_INDEX, FRAME_INDEX, TIMESTAMP_S, VIDEO_ID, CONTENT_BOX)

FRAMES_SCHEMA = """\
Frames of the videos of one shard (traitlens extract_shard). Per frame, row i:
  frames       uint8 (n_frames_total, frame_height, frame_width, 3) RGB, the video
               frame fitted into the box with its aspect kept, centred, black padding;
               one frame per chunk
  video_index  int32 (n_frames_total,) row of the per-video datasets
  frame_index  int32 (n_frames_total,) 0-based index of the frame in its video
               (presentation order; frames_per_video evenly spaced ones:
               floor(k * (F - 1) / frames_per_video), all F when F is smaller)
  timestamp_s  float64 (n_frames_total,) the frame's presentation time in the video
Per video, row j (only videos extracted without error; see the QC table):
  video_id     utf-8 string (n_videos,)
  content_box  int32 (n_videos, 4) x, y, width, height of the picture in the box
Attributes: frames_per_video, frame_width, frame_height, created_by, schema."""

# The datasets the face stage reads, checked by open_frames
_STREAMED = (FRAMES, VIDEO_INDEX, FRAME_INDEX, VIDEO_ID)


class FramesWriter:
    """Appends each video's frames to a frames file as it arrives; the per-video and
    index datasets are written when the ``with`` block ends without an error."""

    def __init__(self, path, frames_per_video, width, height, created_by):
        self.file = h5py.File(path, "w", track_order=False)
        self.file.attrs.update(
            schema=FRAMES_SCHEMA,
            frames_per_video=frames_per_video,
            frame_width=width,
            frame_height=height,
            created_by=created_by,
        )
        self.frames = self.file.create_dataset(
            FRAMES,
            shape=(0, height, width, 3),
            maxshape=(None, height, width, 3),
            chunks=(1, height, width, 3),
            dtype=np.uint8,
            track_times=False,
        )
        # the order of this dict is the order the datasets are created in (same bytes)
        self.rows: dict[str, list[np.ndarray]] = {VIDEO_INDEX: [], FRAME_INDEX: [], TIMESTAMP_S: []}
        self.ids: list[str] = []
        self.boxes: list[tuple[int, int, int, int]] = []

    def add(
        self,
        video_id: str,
        pixels: np.ndarray,
        frame_index: np.ndarray,
        timestamp_s: np.ndarray,
        content_box: tuple[int, int, int, int],
    ) -> None:
        """One video: uint8 (n, H, W, 3) pixels, their frame indices and times."""
        n, start = len(pixels), self.frames.shape[0]
        self.frames.resize(start + n, axis=0)
        if n:
            self.frames[start:] = pixels
        self.rows[VIDEO_INDEX].append(np.full(n, len(self.ids), dtype=np.int32))
        self.rows[FRAME_INDEX].append(np.asarray(frame_index).astype(np.int32))
        self.rows[TIMESTAMP_S].append(np.asarray(timestamp_s).astype(np.float64))
        self.ids.append(video_id)
        self.boxes.append(content_box)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        try:
            if exc_type is None:
                dtypes = {VIDEO_INDEX: np.int32, FRAME_INDEX: np.int32}
                for name, parts in self.rows.items():
                    dtype = dtypes.get(name, np.float64)
                    data = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
                    self.file.create_dataset(name, data=data.astype(dtype), track_times=False)
                string_dataset(self.file, VIDEO_ID, self.ids)
                boxes = np.array(self.boxes, dtype=np.int32).reshape(-1, 4)
                self.file.create_dataset(CONTENT_BOX, data=boxes, track_times=False)
        finally:
            self.file.close()


# --- readers ---------------------------------------------------------------------------


class FrameIndex(NamedTuple):
    """Which video and frame each row of a shard file is."""

    video_ids: list[str]  # per video
    video_index: np.ndarray  # int32 (n,) row of video_ids
    frame_index: np.ndarray  # int32 (n,)


class RowKeys(NamedTuple):
    """The rows of a shard file a model can use, with their video and frame."""

    rows: np.ndarray  # int64 (k,) row numbers in the file
    video_id: np.ndarray  # object (k,)
    frame_index: np.ndarray  # (k,) as stored


def open_frames(path: str | Path) -> h5py.File:
    """Open a frames file for streaming (the face stage), checking it has what that reads
    and that its index datasets fit its frames. Read it with :func:`frame_pixels` and
    :func:`read_index`; the caller closes it."""
    path = Path(path)
    f = open_checked(path, KIND, RULE, _STREAMED)
    problem = _shape_problem(f)
    if problem:
        f.close()
        raise UserError(f"{path}: {problem}; {rebuild_hint(path, RULE)}")
    return f


def _shape_problem(f: h5py.File) -> str:
    frames, video_index = f[FRAMES], f[VIDEO_INDEX]
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        return f"frames is {frames.shape} {frames.dtype}, expected (n, H, W, 3) uint8"
    n, n_videos = frames.shape[0], f[VIDEO_ID].shape[0]
    if video_index.shape != (n,) or f[FRAME_INDEX].shape != (n,):
        return "video_index / frame_index do not have one entry per frame"
    vi = video_index[:]
    if n and (vi.min() < 0 or vi.max() >= n_videos):
        return f"video_index points outside the {n_videos} videos"
    return ""


def frame_pixels(f: h5py.File) -> h5py.Dataset:
    """uint8 (n, H, W, 3), left on disk, of a file from :func:`open_frames`."""
    return f[FRAMES]


def read_index(f: h5py.File) -> FrameIndex:
    """The video and frame of every row, of a file from :func:`open_frames`."""
    return FrameIndex(
        [as_str(v) for v in f[VIDEO_ID][:]],
        f[VIDEO_INDEX][:].astype(np.int32),
        f[FRAME_INDEX][:].astype(np.int32),
    )


def read_row_keys(path: str | Path, label: str = KIND) -> RowKeys:
    """Every row's video and frame (all rows are usable). ``label``: what error messages
    call the file (the training code says img)."""
    with open_checked(path, label, RULE, [FRAMES, VIDEO_INDEX, FRAME_INDEX, VIDEO_ID]) as f:
        ids = np.array([as_str(v) for v in f[VIDEO_ID][:]], dtype=object)
        video_index = f[VIDEO_INDEX][:]
        rows = np.arange(len(video_index))
        return RowKeys(rows, ids[video_index[rows]], f[FRAME_INDEX][:][rows])


def open_pixels(path: str | Path, label: str = KIND, **options) -> h5py.Dataset:
    """The frames dataset of a checked, open file, left on disk (``options`` go to
    h5py.File); close it with ``dataset.file.close()``."""
    return open_checked(path, label, RULE, [FRAMES], **options)[FRAMES]


def open_indexed_pixels(path: str | Path) -> tuple[h5py.Dataset, np.ndarray]:
    """(frames dataset left on disk, frame_index of its rows); close with
    ``dataset.file.close()``."""
    f = open_checked(path, KIND, RULE, [FRAMES, FRAME_INDEX])
    return f[FRAMES], f[FRAME_INDEX][()]


def read_frame_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the stored frames."""
    with open_checked(path, KIND, RULE, [FRAMES]) as f:
        height, width = (int(v) for v in f[FRAMES].shape[1:3])
    return height, width


class Geometry(NamedTuple):
    video_ids: list[str]
    content_box: np.ndarray  # float64 (n_videos, 4) x, y, width, height
    frame_height: int
    frame_width: int


def read_geometry(path: str | Path) -> Geometry:
    """Each video's content box and the stored frame size."""
    with open_checked(path, KIND, RULE, [FRAMES, VIDEO_ID, CONTENT_BOX]) as f:
        _, height, width = f[FRAMES].shape[:3]
        box = f[CONTENT_BOX][()].astype(np.float64).reshape(-1, 4)
        ids = [as_str(v) for v in f[VIDEO_ID][()]]
    return Geometry(ids, box, height, width)
