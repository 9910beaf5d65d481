"""Extract one shard: per video probe, plan, frames and audio; write two HDF5 files + QC.

A video that ffprobe/ffmpeg cannot read is recorded as ``failed`` with ffmpeg's reason
and contributes no rows to the HDF5 files; the other videos are unaffected. Videos are
processed ``threads`` at a time, each with single-threaded ffmpeg processes: on a
shard that keeps every core busy with no thread hand-offs, which gave more videos per
second than decoding one video at a time with parallel processes (see bench/README.md).
Outputs are written under a temporary name and renamed when complete; identical
inputs give byte-identical files (no timestamps or paths are stored).
"""

from __future__ import annotations

import csv
import logging
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from traitlens.core.atomic import atomic_path
from traitlens.core.faults import kill_point
from traitlens.extract.audio_features import LOG_FLOOR, AudioParams, extract_audio_features
from traitlens.extract.audio_file import AudioWriter
from traitlens.extract.frame_decode import extract_frames
from traitlens.extract.frame_plan import evenly_spaced_indices
from traitlens.extract.frames_file import FramesWriter
from traitlens.extract.probe import VideoProbe, VideoReadError, probe_video, tool_path
from traitlens.extract.qc import SHARD_QC_COLUMNS

log = logging.getLogger("traitlens.extract.extract_shard")


@dataclass(frozen=True)
class VideoResult:
    """Everything extracted from one video, or why it failed."""

    video_id: str
    probe: VideoProbe | None
    pixels: np.ndarray | None = None
    frame_index: np.ndarray | None = None
    timestamp_s: np.ndarray | None = None
    content_box: tuple[int, int, int, int] | None = None
    features: np.ndarray | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.pixels is not None

    def qc_row(self) -> dict[str, object]:
        probe = self.probe
        width, height = probe.display_size if probe is not None else ("", "")
        return {
            "video_id": self.video_id,
            "status": "ok" if self.ok else "failed",
            "reason": self.reason,
            "duration_s": _number(probe.duration_s) if probe is not None else "",
            "fps": _number(probe.fps) if probe is not None else "",
            "width": width,
            "height": height,
            "has_audio": str(probe.has_audio).lower() if probe is not None else "",
            "n_frames": len(self.pixels) if self.ok else 0,
        }


def extract_video(
    video_id: str,
    path: str,
    frames_per_video: int,
    frame_size: tuple[int, int],
    audio: AudioParams,
    workers: int = 1,
) -> VideoResult:
    """Probe, plan and extract one video. A file ffmpeg cannot read gives a failed
    result carrying ffmpeg's reason; nothing else is caught (bugs must surface)."""
    probe = None
    try:
        probe = probe_video(path)
        indices = evenly_spaced_indices(probe.n_frames, frames_per_video)
        frames = extract_frames(probe, indices, *frame_size, workers=workers)
        features = extract_audio_features(probe, audio)
    except VideoReadError as err:
        return VideoResult(video_id, probe, reason=err.reason)
    return VideoResult(
        video_id,
        probe,
        pixels=frames.pixels,
        frame_index=frames.frame_index,
        timestamp_s=frames.timestamp_s,
        content_box=frames.content_box,
        features=features,
    )


def extract_shard(
    videos: Sequence[tuple[str, str]],
    frames_out: str | Path,
    audio_out: str | Path,
    qc_out: str | Path,
    frames_per_video: int,
    frame_width: int,
    frame_height: int,
    audio: AudioParams,
    threads: int = 1,
    progress: bool = True,
) -> list[dict[str, object]]:
    """Extract every (video_id, path) of a shard; write the frames and audio HDF5 files
    and the QC table (each atomically). Returns the QC rows."""
    ids = [video_id for video_id, _ in videos]
    if len(set(ids)) != len(ids):
        raise ValueError("video ids of a shard must be unique")
    threads = max(1, int(threads))
    concurrent = max(1, min(threads, len(videos)))
    workers = max(1, threads // concurrent)  # spare cores go to each video's decode

    def task(item: tuple[str, str]) -> VideoResult:
        return extract_video(
            item[0], item[1], frames_per_video, (frame_width, frame_height), audio, workers
        )

    qc_rows = []
    created_by = f"traitlens.extract.extract_shard with {ffmpeg_version()}"
    audio_attrs = {"log_floor": LOG_FLOOR, "created_by": created_by, **audio.as_dict()}
    with (
        atomic_path(frames_out) as frames_tmp,
        atomic_path(audio_out) as audio_tmp,
        FramesWriter(frames_tmp, frames_per_video, frame_width, frame_height, created_by) as fw,
        AudioWriter(audio_tmp, audio.n_mels, audio_attrs) as aw,
        ThreadPoolExecutor(concurrent) as pool,
    ):
        results = _ordered(pool, task, videos, ahead=2 * concurrent)
        if progress:
            results = tqdm(results, total=len(videos), desc="videos", unit="video", file=sys.stderr)
        for result in results:
            if result.ok:
                fw.add(
                    result.video_id,
                    result.pixels,
                    result.frame_index,
                    result.timestamp_s,
                    result.content_box,
                )
                aw.add(result.video_id, result.features, result.probe.has_audio)
                kill_point("extract_shard")
            else:
                log.warning("failed: %s: %s", result.video_id, result.reason)
            qc_rows.append(result.qc_row())
    write_qc(qc_out, qc_rows)
    n_failed = sum(row["status"] != "ok" for row in qc_rows)
    log.info("shard: %d videos, %d failed", len(qc_rows), n_failed)
    return qc_rows


def write_qc(path: str | Path, rows: Iterable[dict[str, object]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, SHARD_QC_COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _one_line(v) for k, v in row.items()})


@lru_cache(maxsize=1)
def ffmpeg_version() -> str:
    """e.g. 'ffmpeg 5.1.6-0+deb12u1' (provenance for the created_by attribute)."""
    done = subprocess.run([tool_path("ffmpeg"), "-version"], capture_output=True, text=True)
    words = (done.stdout.splitlines() or ["ffmpeg"])[0].split()
    return " ".join(words[:3:2]) if len(words) >= 3 else "ffmpeg"


def _ordered(
    pool: ThreadPoolExecutor,
    fn: Callable[[tuple[str, str]], VideoResult],
    items: Sequence[tuple[str, str]],
    ahead: int,
) -> Iterator[VideoResult]:
    """pool.map with at most ``ahead`` results in flight, so memory stays bounded."""
    pending: list[Future[VideoResult]] = []
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.pop(0).result()
    for future in pending:
        yield future.result()


def _number(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def _one_line(value: object) -> object:
    if isinstance(value, str):
        return " ".join(value.split())
    return value
