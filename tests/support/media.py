"""Real test videos made with real ffmpeg: every frame shows its own index.

Each frame is a grid of large black/white blocks spelling the frame number in binary
(big enough that H.264 keeps them), so a test reads back which source frame it got
from the pixels alone. Audio, when asked for, is a pure tone.
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np

GRID_ROWS, GRID_COLS = 3, 4  # 12 bits: frame numbers up to 4095


def index_frame(index: int, width: int, height: int) -> np.ndarray:
    """An rgb24 frame whose blocks spell ``index`` in binary (bit 0 top-left)."""
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    for bit in range(GRID_ROWS * GRID_COLS):
        if index >> bit & 1:
            row, col = divmod(bit, GRID_COLS)
            y0, y1 = row * height // GRID_ROWS, (row + 1) * height // GRID_ROWS
            x0, x1 = col * width // GRID_COLS, (col + 1) * width // GRID_COLS
            frame[y0:y1, x0:x1] = 255
    return frame


def read_index(frame: np.ndarray, box: tuple[int, int, int, int] | None = None) -> int:
    """The frame number spelled by ``frame`` (inside the content ``box`` x, y, w, h)."""
    x, y, w, h = box if box is not None else (0, 0, frame.shape[1], frame.shape[0])
    index = 0
    for bit in range(GRID_ROWS * GRID_COLS):
        row, col = divmod(bit, GRID_COLS)
        cy = y + int((row + 0.5) * h / GRID_ROWS)
        cx = x + int((col + 0.5) * w / GRID_COLS)
        if frame[cy, cx].mean() > 127:
            index |= 1 << bit
    return index


def make_clip(
    path: Path,
    n_frames: int = 60,
    fps: int = 30,
    gop: int = 30,
    size: tuple[int, int] = (320, 180),
    tone_hz: float | None = 1000.0,
    sample_rate: int = 44100,
    bframes: int = 3,
    faststart: bool = False,
    extra: tuple[str, ...] = (),
) -> Path:
    """Encode an H.264 (+ AAC tone) mp4 whose frame k shows the number k.

    Keyframes fall exactly every ``gop`` frames (scene-cut detection off).
    """
    width, height = size
    cmd = ["ffmpeg", "-v", "error", "-y", "-nostdin"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
    cmd += ["-r", str(fps), "-i", "pipe:0"]
    if tone_hz is not None:
        duration = n_frames / fps
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate={sample_rate}"]
        cmd += ["-t", f"{duration:.6f}"]
    cmd += ["-map", "0:v"] + (["-map", "1:a", "-c:a", "aac"] if tone_hz is not None else [])
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    cmd += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", str(bframes)]
    cmd += ["-movflags", "+faststart"] if faststart else []
    cmd += [*extra, "file:" + str(Path(path).resolve())]
    frames = b"".join(index_frame(k, width, height).tobytes() for k in range(n_frames))
    subprocess.run(cmd, input=frames, check=True, capture_output=True)
    return path


def set_rotation(path: Path, degrees: int) -> None:
    """Write a display matrix rotating the video track by ``degrees`` (multiple of 90,
    clockwise, like a phone held upright) into its tkhd box, in place."""
    data = bytearray(Path(path).read_bytes())
    one, minus = 0x10000, -0x10000
    a, b, c, d = {0: (one, 0, 0, one), 90: (0, one, minus, 0), 180: (minus, 0, 0, minus)}.get(
        degrees % 360, (0, minus, one, 0)
    )
    pos = 0
    while (pos := data.find(b"tkhd", pos + 1)) > 0:
        version = data[pos + 4]
        matrix_at = pos + 4 + 4 + (32 if version == 1 else 20) + 16
        (width,) = struct.unpack_from(">I", data, matrix_at + 36)
        if width:  # the video track (audio tracks have zero width)
            struct.pack_into(">9i", data, matrix_at, a, b, 0, c, d, 0, 0, 0, 0x40000000)
            break
    Path(path).write_bytes(bytes(data))


def truncate_half(src: Path, dst: Path) -> Path:
    """A copy of ``src`` cut in half (a download that stopped midway)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: len(data) // 2])
    return dst
