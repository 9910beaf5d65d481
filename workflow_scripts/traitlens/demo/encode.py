"""Encode raw frames + a WAV into an H.264/AAC mp4 with ffmpeg, reproducibly.

Frames go to ffmpeg's stdin as raw rgb24. ``-map_metadata -1`` and the bitexact flags
keep version strings and dates out of the file; x264 runs single-threaded
(``-threads 1``), the setting under which it is deterministic, so equal inputs give
byte-identical files with the same ffmpeg build. Paths are passed as absolute
``file:`` URLs: a video id may start with '-' and must never read as an option.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from traitlens.core.errors import UserError


def ffmpeg_binary() -> str:
    """The ffmpeg on PATH; a clear error when there is none."""
    found = shutil.which("ffmpeg")
    if not found:
        raise UserError(
            "ffmpeg not found on PATH: the demo generator needs it to write mp4 files "
            "(Debian: apt-get install ffmpeg; conda: conda install -c conda-forge ffmpeg)"
        )
    return found


def _url(path: str | Path) -> str:
    return "file:" + os.path.abspath(path)


def encode_command(
    wav: str | Path, out: str | Path, width: int, height: int, fps: float, crf: int = 20
) -> list[str]:
    """The ffmpeg command line (raw rgb24 on stdin + ``wav`` -> mp4 at ``out``)."""
    return [
        ffmpeg_binary(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-r",
        str(fps),
        "-i",
        "pipe:0",
        "-i",
        _url(wav),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-f",
        "mp4",
        _url(out),
    ]


def encode_mp4(
    frames: Iterable[np.ndarray],
    wav: str | Path,
    out: str | Path,
    width: int,
    height: int,
    fps: float,
) -> None:
    """Write ``frames`` (uint8 HxWx3 RGB) with the audio in ``wav`` to ``out`` (mp4)."""
    cmd = encode_command(wav, out, width, height, fps)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for frame in frames:
            if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                raise ValueError(
                    f"frame of shape {frame.shape} {frame.dtype}, not {height}x{width}x3"
                )
            proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read().decode("utf-8", "replace")
    if proc.wait() != 0:
        raise RuntimeError(f"ffmpeg failed writing {out}: {err.strip()}")
