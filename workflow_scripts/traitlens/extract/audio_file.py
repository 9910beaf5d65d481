"""The ``audio/<shard>.h5`` format: its dataset names, schema, writer and checked reader.

The one module that knows the file's layout: every other module writes and reads audio
files through the classes here. Only numpy and h5py are imported, so the audio model
reads its features without ffmpeg.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint, string_dataset

KIND = "audio"  # what error messages call the file
RULE = "extract_shard"  # the rule that writes it

FEATURES = "features"
OFFSETS = "offsets"
VIDEO_ID = "video_id"
HAS_AUDIO = "has_audio"
DATASETS = (FEATURES, OFFSETS, VIDEO_ID, HAS_AUDIO)

AUDIO_SCHEMA = """\
Log mel filter-bank features of the videos of one shard (traitlens extract_shard).
  features   float32 (n_rows_total, n_mels): natural log of mel energies + log_floor;
             frames of window_ms every hop_ms, Hann window, power spectrum of the
             next power-of-two FFT / n_fft, HTK-mel triangles from fmin_hz to fmax_hz,
             of the first audio stream downmixed to mono at sample_rate
  offsets    int64 (n_videos + 1,) video j's rows are features[offsets[j]:offsets[j+1]]
             (none for a video without audio)
  video_id   utf-8 string (n_videos,) same videos and order as the frames file
  has_audio  bool (n_videos,)
Attributes: sample_rate, n_mels, window_ms, hop_ms, fmin_hz, fmax_hz, log_floor,
created_by, schema."""


class AudioWriter:
    """Appends each video's log mel rows to an audio file as it arrives; the per-video
    datasets are written when the ``with`` block ends without an error. ``attrs``: the
    attributes after ``schema``, in the order given (log_floor, created_by, the
    settings)."""

    def __init__(self, path, n_mels: int, attrs: Mapping[str, object]):
        self.file = h5py.File(path, "w", track_order=False)
        self.file.attrs.update(schema=AUDIO_SCHEMA, **attrs)
        self.features = self.file.create_dataset(
            FEATURES,
            shape=(0, n_mels),
            maxshape=(None, n_mels),
            chunks=(1024, n_mels),
            dtype=np.float32,
            track_times=False,
        )
        self.offsets = [0]
        self.ids: list[str] = []
        self.has_audio: list[bool] = []

    def add(self, video_id: str, features: np.ndarray, has_audio: bool) -> None:
        """One video: its (n_rows, n_mels) features (no rows when it has no audio)."""
        start, n = self.offsets[-1], len(features)
        if n:
            self.features.resize(start + n, axis=0)
            self.features[start:] = features
        self.offsets.append(start + n)
        self.ids.append(video_id)
        self.has_audio.append(bool(has_audio))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        try:
            if exc_type is None:
                offsets = np.array(self.offsets, dtype=np.int64)
                self.file.create_dataset(OFFSETS, data=offsets, track_times=False)
                string_dataset(self.file, VIDEO_ID, self.ids)
                has_audio = np.array(self.has_audio, dtype=bool)
                self.file.create_dataset(HAS_AUDIO, data=has_audio, track_times=False)
        finally:
            self.file.close()


class AudioReader:
    """A checked, open audio file: the per-video datasets in memory, the features left
    on disk and read one video at a time. UserError naming the file and the
    extract_shard rule when it is not an audio file of the expected layout."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.file = open_checked(path, KIND, RULE, DATASETS)
        try:
            self._features = self.file[FEATURES]
            self.offsets = self.file[OFFSETS][()].astype(np.int64)
            self.has_audio = self.file[HAS_AUDIO][()].astype(bool)
            self.video_ids = [as_str(v) for v in self.file[VIDEO_ID][()]]
            problem = _layout_problem(
                self._features.shape, self.offsets, self.has_audio, self.video_ids
            )
            if problem:
                raise UserError(f"{path}: {problem}; {rebuild_hint(path, RULE)}")
        except BaseException:
            self.file.close()
            raise

    @property
    def n_mels(self) -> int:
        return self._features.shape[1]

    def rows(self, j: int) -> np.ndarray:
        """float32 (n_rows, n_mels): video j's features (none without audio)."""
        return self._features[int(self.offsets[j]) : int(self.offsets[j + 1])]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _layout_problem(shape: tuple, offsets, has_audio, ids) -> str:
    """Why a shard's datasets do not fit together ('' when they do)."""
    n = len(ids)
    if len(shape) != 2:
        return f"features has shape {shape}, expected (n_rows, n_mels)"
    if offsets.shape != (n + 1,) or has_audio.shape != (n,):
        return (
            f"offsets {offsets.shape} / has_audio {has_audio.shape} do not match "
            f"{n} video ids (expected ({n + 1},) / ({n},))"
        )
    n_rows = shape[0]
    if offsets[0] != 0 or offsets[-1] != n_rows or (np.diff(offsets) < 0).any():
        return f"offsets are not a non-decreasing cover of the {n_rows} feature rows"
    return ""
