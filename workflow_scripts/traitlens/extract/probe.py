"""Probe one video: size, rotation, audio, and the timestamp and keyframe flag of every frame.

``probe_video`` reads an mp4's own sample tables when it can (``mp4_index``, no process
spawned) and otherwise runs one ffprobe, which also names the reason when a file is
unreadable. Frame counts come from the video packets (exact), not from metadata.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traitlens.core.errors import UserError
from traitlens.extract import mp4_index

PROBE_TIMEOUT_S = 300


class VideoReadError(Exception):
    """A video that ffprobe/ffmpeg cannot read; ``reason`` is one short line for QC."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ProbeError(VideoReadError):
    """ffprobe could not read the file (zero-byte, truncated, no video stream, ...)."""


@dataclass(frozen=True, eq=False)
class VideoProbe:
    """What extraction needs to know about one video.

    ``width``/``height`` are the coded size; ``rotation`` is the display rotation in
    degrees (counter-clockwise, as ffprobe reports it), which ffmpeg applies when it
    decodes, so ``display_size`` is the size of the frames ffmpeg delivers.
    ``frame_pts`` (seconds, ascending), ``keyframe`` and ``reference`` (H.264 frames
    other frames predict from; None when unknown) have one entry per frame in
    presentation order; the timestamps are those ffmpeg gives the frames with -copyts.
    """

    path: str
    duration_s: float
    fps: float
    width: int
    height: int
    rotation: float
    sample_aspect: tuple[int, int]
    has_audio: bool
    video_stream: int
    audio_stream: int | None
    frame_pts: np.ndarray
    keyframe: np.ndarray
    reference: np.ndarray | None
    source: str  # "mp4" (sample tables) or "ffprobe"

    @property
    def n_frames(self) -> int:
        return len(self.frame_pts)

    @property
    def quarter_turned(self) -> bool:
        return round(self.rotation / 90.0) % 2 == 1

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as displayed: pixel aspect applied, rotation applied."""
        num, den = self.sample_aspect
        width = max(1, round(self.width * num / den)) if num and den else self.width
        return (self.height, width) if self.quarter_turned else (width, self.height)


def tool_path(name: str) -> str:
    """The ffmpeg/ffprobe executable on PATH, or a UserError saying how to get one."""
    found = shutil.which(name)
    if not found:
        raise UserError(
            f"{name} not found on PATH. Install it (Debian/Ubuntu: `apt-get install "
            "ffmpeg`; conda: `conda install -c conda-forge ffmpeg`) or run with --sdm conda."
        )
    return found


def file_url(path: str | os.PathLike[str]) -> str:
    """``file:`` + absolute path, so that a name like ``--Ymqszjv54.001.mp4`` can never
    read as an option and a name with ``:`` never reads as a protocol."""
    return "file:" + os.path.abspath(os.fspath(path))


_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def short_reason(stderr: str, path: str | os.PathLike[str], fallback: str) -> str:
    """ffmpeg's stderr as one short line: distinct messages, paths and log prefixes cut."""
    url = file_url(path)
    messages: list[str] = []
    for line in stderr.splitlines():
        line = _PREFIX.sub("", line.strip())
        line = line.replace(url + ": ", "").replace(url, Path(path).name)
        if line and line not in messages:
            messages.append(line)
    reason = "; ".join(messages[-3:]) or fallback
    return reason if len(reason) <= 240 else reason[:237] + "..."


def probe_video(path: str | os.PathLike[str]) -> VideoProbe:
    """Probe ``path``: the mp4 sample tables when they are plain, else ffprobe."""
    fast = probe_mp4(path)
    return fast if fast is not None else ffprobe_video(path)


def probe_mp4(path: str | os.PathLike[str]) -> VideoProbe | None:
    """Probe from the mp4's own tables; None when the file is not a plain mp4."""
    path = os.fspath(path)
    try:
        movie = mp4_index.read_movie(path)
        video = [t for t in movie.tracks if t.handler == b"vide"]
        if not video or not video[0].width:
            return None
        track = video[0]
        pts, keyframe = mp4_index.video_timeline(track, movie.timescale)
        offsets = mp4_index.sample_offsets(track)
        # A download cut short keeps a moov placed up front: its samples then point
        # past the end of the file. Leave such files to ffprobe and ffmpeg's verdict.
        if len(offsets) != len(pts) or (offsets + track.sizes).max() > os.path.getsize(path):
            return None
        reference = mp4_index.h264_reference_flags(path, track, offsets)
    except (mp4_index.Unsupported, OSError, ValueError, IndexError, struct.error):
        return None  # the reader is only a shortcut: anything odd goes to ffprobe
    order = np.argsort(pts, kind="stable")
    handlers = [t.handler for t in movie.tracks]
    sound = [i for i, h in enumerate(handlers) if h == b"soun"]
    audio_has_samples = sound and movie.tracks[sound[0]].deltas is not None
    return VideoProbe(
        path=path,
        duration_s=movie.duration / movie.timescale,
        fps=_fps(pts[order]),
        width=track.width,
        height=track.height,
        rotation=mp4_index.rotation_degrees(track.matrix),
        sample_aspect=track.sar,
        has_audio=bool(audio_has_samples and len(movie.tracks[sound[0]].deltas)),
        video_stream=handlers.index(b"vide"),
        audio_stream=sound[0] if audio_has_samples else None,
        frame_pts=pts[order],
        keyframe=keyframe[order],
        reference=reference[order] if reference is not None else None,
        source="mp4",
    )


def ffprobe_video(path: str | os.PathLike[str]) -> VideoProbe:
    """Probe with one ffprobe call (streams, format, and every packet's pts and flags)."""
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:  # else ffprobe names the problem
        raise ProbeError("empty file (0 bytes): nothing was written to it; copy it again")
    cmd = [
        tool_path("ffprobe"),
        "-v",
        "error",
        "-of",
        "json",
        "-show_format",
        "-show_streams",
        "-show_entries",
        "packet=stream_index,pts_time,dts_time,flags",
        file_url(path),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        raise ProbeError(f"ffprobe timed out after {PROBE_TIMEOUT_S} s") from err
    stderr = done.stderr.decode("utf-8", "replace")
    if done.returncode != 0:
        reason = short_reason(stderr, path, f"ffprobe exit status {done.returncode}")
        if "moov atom not found" in stderr:
            # ffmpeg writes an mp4's index (moov) last: a copy or download cut short has none.
            reason = f"truncated or not an mp4: no index (moov) box; copy it again ({reason})"
        raise ProbeError(reason)
    info = json.loads(done.stdout or b"{}")
    streams = info.get("streams", [])
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
    ]
    if not videos:
        raise ProbeError("no video stream")
    video = videos[0]
    if not (int(video.get("width") or 0) > 0 and int(video.get("height") or 0) > 0):
        raise ProbeError(short_reason(stderr, path, "video stream has no frame size"))
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    stamps, flags = [], []
    for packet in info.get("packets", []):
        if packet.get("stream_index") != video["index"] or "D" in packet.get("flags", ""):
            continue
        stamp = packet.get("pts_time", packet.get("dts_time"))
        if stamp is None:
            raise ProbeError("video packets carry no timestamps")
        stamps.append(float(stamp))
        flags.append("K" in packet.get("flags", ""))
    if not stamps:
        raise ProbeError(short_reason(stderr, path, "video stream has no frames"))
    declared = int(video.get("nb_frames") or 0)
    if declared > len(stamps):
        # A cut-off download with its index up front: the index lists frames that
        # the file no longer holds (ffprobe says "partial file" and exits 0).
        reason = short_reason(stderr, path, "")
        raise ProbeError(
            f"truncated: {len(stamps)} of {declared} video frames present"
            + (f" ({reason})" if reason else "")
        )
    pts = np.asarray(stamps, dtype=np.float64)
    order = np.argsort(pts, kind="stable")
    duration = _float(info.get("format", {}).get("duration"))
    if duration is None:
        duration = _float(video.get("duration")) or float(pts.max())
    return VideoProbe(
        path=path,
        duration_s=duration,
        fps=_fps(pts[order]),
        width=int(video["width"]),
        height=int(video["height"]),
        rotation=_ffprobe_rotation(video),
        sample_aspect=_ratio(video.get("sample_aspect_ratio")),
        has_audio=audio is not None,
        video_stream=int(video["index"]),
        audio_stream=int(audio["index"]) if audio is not None else None,
        frame_pts=pts[order],
        keyframe=np.asarray(flags, dtype=bool)[order],
        reference=None,
        source="ffprobe",
    )


def _fps(pts: np.ndarray) -> float:
    """Average frame rate over the frames' span (ffprobe's avg_frame_rate)."""
    if len(pts) < 2 or pts[-1] <= pts[0]:
        return 0.0
    return (len(pts) - 1) / float(pts[-1] - pts[0])


def _float(value) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _ratio(text: str | None) -> tuple[int, int]:
    try:
        num, den = (int(v) for v in str(text).split(":"))
    except ValueError:
        return (1, 1)
    return (num, den) if num > 0 and den > 0 else (1, 1)


def _ffprobe_rotation(stream: dict) -> float:
    for side in stream.get("side_data_list", []):
        if "rotation" in side:
            return float(side["rotation"]) + 0.0
    rotate = _float(stream.get("tags", {}).get("rotate"))
    return -rotate + 0.0 if rotate else 0.0
