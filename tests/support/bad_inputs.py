"""A corpus of bad (and good) inputs, made by the tests with real ffmpeg: nothing downloaded.

Videos are real H.264 (+ AAC) mp4 files. Those that test frame sampling show their frame
number (``media.index_frame``), so a test reads back which frame it got; those that test
the face stage are made from the face photos installed packages ship
(``face_photos``): a still photo, two photos side by side, a photo sliding out of the
picture. Label files, manifests and weights files are written as a user would get them
wrong. Every function writes into a folder the caller names and returns the path.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from traitlens.ingest.labels import BIG_FIVE

from support.face_photos import astronaut, fit, grace_hopper, no_face_pictures, side_by_side
from support.media import index_frame, set_rotation, truncate_half
from support.pickles import code_running_pickle, python2_label_pickle

GREY = 128


def encode_video(
    path: Path,
    frames: Iterable[np.ndarray],
    size: tuple[int, int],
    fps: float,
    duration_s: float | None = None,
    tone_hz: float | None = 440.0,
    sample_rate: int = 16000,
    gop: int = 10,
    video_filter: str | None = None,
) -> Path:
    """Encode RGB ``frames`` (each ``size`` = (width, height)) as H.264, plus an AAC tone
    of ``duration_s`` when ``tone_hz`` is given. Frames are streamed to ffmpeg, so a
    long or large video never sits in memory. ``video_filter`` (e.g. a ``setpts``
    expression) is applied before encoding."""
    width, height = size
    cmd = ["ffmpeg", "-v", "error", "-y", "-nostdin"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
    cmd += ["-r", f"{fps:g}", "-i", "pipe:0"]
    if tone_hz is not None:
        if duration_s is None:
            raise ValueError("a tone needs duration_s")
        # -t before -i: limits the tone input, not the output (the video keeps every frame)
        cmd += ["-t", f"{duration_s:.6f}", "-f", "lavfi"]
        cmd += ["-i", f"sine=frequency={tone_hz:g}:sample_rate={sample_rate}"]
        cmd += ["-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "24k"]
    if video_filter:
        cmd += ["-vf", video_filter, "-fps_mode", "passthrough"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    cmd += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    cmd += ["file:" + str(Path(path).resolve())]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        try:
            for frame in frames:
                if frame.shape != (height, width, 3):
                    raise ValueError(f"frame {frame.shape} is not {height}x{width}x3")
                proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg stopped reading: its stderr below says why
        finally:
            proc.stdin.close()
        stderr = proc.stderr.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed for {path}: {stderr}")
    return Path(path)


# --- videos of faces ------------------------------------------------------------------


def still_video(
    path: Path,
    picture: np.ndarray,
    size: tuple[int, int] = (320, 240),
    seconds: float = 2.0,
    fps: int = 10,
    tone_hz: float | None = 440.0,
) -> Path:
    """``picture`` fitted into the frame (aspect kept), held for ``seconds``."""
    frame = fit(picture, *size)
    n = round(seconds * fps)
    return encode_video(path, (frame for _ in range(n)), size, fps, n / fps, tone_hz)


def two_faces_video(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    """Two people side by side for the whole video: the astronaut on the left, Grace
    Hopper on the right at 0.4x (her face then ~2/3 the astronaut's width)."""
    return still_video(
        path, side_by_side(astronaut(), grace_hopper(), 0.4), (480, 270), seconds, fps
    )


def face_leaving_video(path: Path, seconds: float = 3.0, fps: int = 10) -> Path:
    """The astronaut still for the first half, then sliding out to the right; gone (an
    empty grey picture) for the last fifth."""
    size = (320, 240)
    photo = fit(astronaut(), 240, 240)
    n = round(seconds * fps)

    def frame(k: int) -> np.ndarray:
        t = k / (n - 1)
        shift = 0.0 if t <= 0.5 else min(1.0, (t - 0.5) / 0.3)  # out of the picture at 0.8
        x0 = 40 + round(shift * 300)  # the photo's left edge; 320 and beyond: not shown
        canvas = np.full((size[1], size[0], 3), GREY, np.uint8)
        visible = max(0, min(240, size[0] - x0))
        canvas[:, x0 : x0 + visible] = photo[:, :visible]
        return canvas

    return encode_video(path, (frame(k) for k in range(n)), size, fps, n / fps)


def rotated_face_video(path: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    """A phone video held upright: the face is stored turned on its side (landscape
    320x240) and the track's display matrix turns it 90 degrees back on playback, so
    the upright picture is portrait 240x320."""
    upright = fit(grace_hopper(), 240, 320)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what the camera wrote
    n = round(seconds * fps)
    encode_video(path, (stored for _ in range(n)), (320, 240), fps, n / fps)
    set_rotation(path, 90)  # displayed = stored turned 90 degrees clockwise = upright
    return Path(path)


# --- videos that show their frame number ------------------------------------------------


def numbered_video(
    path: Path,
    n_frames: int,
    fps: float,
    size: tuple[int, int] = (320, 180),
    tone_hz: float | None = 1000.0,
    gop: int = 30,
) -> Path:
    """Frame k shows the number k (``media.read_index`` reads it back); a tone as long
    as the video."""
    frames = (index_frame(k, *size) for k in range(n_frames))
    return encode_video(path, frames, size, fps, n_frames / fps, tone_hz, gop=gop)


VFR_FAST = 30  # frames at 30 fps ...
VFR_SLOW = 20  # ... then frames at 10 fps


def vfr_timestamps() -> np.ndarray:
    """Presentation times of the variable frame rate video's frames (seconds)."""
    fast = np.arange(VFR_FAST) / 30
    return np.r_[fast, 1.0 + np.arange(VFR_SLOW) / 10]


def variable_frame_rate_video(path: Path) -> Path:
    """One second at 30 fps, then two at 10 fps (a phone that slowed down in the dark);
    frame k shows k and is shown at ``vfr_timestamps()[k]``."""
    setpts = f"setpts='if(lt(N,{VFR_FAST}),N/30,1+(N-{VFR_FAST})/10)/TB'"
    frames = (index_frame(k, 320, 180) for k in range(VFR_FAST + VFR_SLOW))
    return encode_video(path, frames, (320, 180), 30, 3.0, 1000.0, video_filter=setpts)


# --- unreadable files ---------------------------------------------------------------------


def zero_byte_video(path: Path) -> Path:
    Path(path).write_bytes(b"")
    return Path(path)


def truncated_video(path: Path) -> Path:
    """A face video cut in half, as a download that stopped midway leaves it (the
    moov box at the end is lost)."""
    whole = Path(path).with_name("whole-" + Path(path).name)
    still_video(whole, astronaut())
    truncate_half(whole, path)
    whole.unlink()
    return Path(path)


def audio_only_video(path: Path, seconds: float = 2.0) -> Path:
    """An .mp4 holding only an AAC tone: no video stream."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-nostdin", "-f", "lavfi"]
    cmd += ["-i", "sine=frequency=440:sample_rate=16000", "-t", f"{seconds}"]
    cmd += ["-c:a", "aac", "file:" + str(Path(path).resolve())]
    subprocess.run(cmd, check=True, capture_output=True)
    return Path(path)


def symlink_loop(folder: Path, name: str = "loop") -> Path:
    """A link inside ``folder`` pointing back at ``folder``: a naive recursive scan of
    the videos folder never ends."""
    link = Path(folder) / name
    link.symlink_to(Path(folder).resolve(), target_is_directory=True)
    return link


# --- the video corpus ---------------------------------------------------------------------

ODD_NAME = "été clip ñ.001"  # spaces and non-ASCII characters in the file name


def _builders() -> dict[str, Callable[[Path], Path]]:
    return {
        # faces in every frame
        "astronaut.001": lambda p: still_video(p, astronaut()),
        ODD_NAME: lambda p: still_video(p, grace_hopper()),
        "no_audio.001": lambda p: still_video(p, grace_hopper(), tone_hz=None),
        "rotated_90.001": rotated_face_video,
        "large_1920x1080.001": lambda p: still_video(p, astronaut(), (1920, 1080), 1.5),
        "two_faces.001": two_faces_video,
        # faces in some frames or none
        "face_leaves.001": face_leaving_video,
        "no_face.001": lambda p: still_video(p, no_face_pictures()[0]),
        # frame numbers: sampling checks
        "variable_fps.001": variable_frame_rate_video,
        "one_second.001": lambda p: numbered_video(p, 30, 30),
        "ten_minutes.001": lambda p: numbered_video(p, 1200, 2, (64, 48), gop=20),
        "tiny_64x48.001": lambda p: numbered_video(p, 30, 15, (64, 48)),
        # unreadable
        "truncated.001": truncated_video,
        "zero_byte.001": zero_byte_video,
        "audio_only.001": audio_only_video,
    }


# Which ids the tests hold to what (the corpus test asserts each).
FACE_EVERY_FRAME = (
    "astronaut.001",
    ODD_NAME,
    "no_audio.001",
    "rotated_90.001",
    "large_1920x1080.001",
    "two_faces.001",
)
UNREADABLE = ("truncated.001", "zero_byte.001", "audio_only.001")
VIDEO_IDS = tuple(_builders())


def write_videos(folder: Path, ids: Iterable[str] = VIDEO_IDS) -> dict[str, Path]:
    """Write the corpus videos ``ids`` into ``folder``; {video_id: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    builders = _builders()
    return {v: builders[v](folder / f"{v}.mp4") for v in ids}


# --- label files --------------------------------------------------------------------------


def trait_values(video_ids: Iterable[str]) -> dict[str, dict[str, float]]:
    """{video_id: {trait: value}}: distinct values in [0, 1] per video and trait."""
    return {
        v: {t: round(0.1 + 0.8 * ((n * 5 + k) % 17) / 16, 4) for k, t in enumerate(BIG_FIVE)}
        for n, v in enumerate(sorted(video_ids))
    }


def write_label_pickles(root: Path, ids_by_split: Mapping[str, Iterable[str]]) -> dict[str, Path]:
    """The three First Impressions annotation pickles (Python 2 protocol, numpy
    float64 values, keys ``<id>.mp4``); {split: path}."""
    paths = {}
    for split, ids in ids_by_split.items():
        values = trait_values(ids)
        by_trait = {t: {f"{v}.mp4": values[v][t] for v in values} for t in BIG_FIVE}
        paths[split] = Path(root) / f"annotation_{split}.pkl"
        paths[split].write_bytes(python2_label_pickle(by_trait))
    return paths


def _labels(ids: Iterable[str]) -> dict[str, dict[str, object]]:
    values = trait_values(ids)
    return {t: {f"{v}.mp4": np.float64(values[v][t]) for v in values} for t in BIG_FIVE}


def label_pickle_missing_trait(path: Path, ids: Iterable[str], trait: str) -> Path:
    """A label file without one trait's key (a file saved before a column was added)."""
    labels = _labels(ids)
    del labels[trait]
    Path(path).write_bytes(pickle.dumps(labels, protocol=2))
    return Path(path)


def label_pickle_with_values(
    path: Path, ids: Iterable[str], bad: Mapping[tuple[str, str], object]
) -> Path:
    """A label file whose (video_id, trait) entries in ``bad`` hold the given values
    (NaN, 1.7, 'high', ...)."""
    labels = _labels(ids)
    for (video_id, trait), value in bad.items():
        labels[trait][f"{video_id}.mp4"] = value
    Path(path).write_bytes(pickle.dumps(labels, protocol=2))
    return Path(path)


def label_pickle_running_code(path: Path, marker: Path) -> Path:
    """A 'label file' whose loading would run ``touch marker``."""
    Path(path).write_bytes(code_running_pickle(str(marker)))
    return Path(path)


# --- manifests and weights ----------------------------------------------------------------


def write_manifest(path: Path, rows: Iterable[tuple[str, str, str]]) -> Path:
    """A user manifest TSV: (video_id, path as written, split) rows, traits filled in."""
    rows = list(rows)
    values = trait_values(r[0] for r in rows)
    lines = ["\t".join(["video_id", "path", "split", *BIG_FIVE])]
    for video_id, video_path, split in rows:
        lines.append("\t".join([video_id, video_path, split, *map(str, values[video_id].values())]))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def weights_pickle_of_something_else(path: Path) -> Path:
    """A ``.pt`` that is a pickle of training arguments, not a state dict of tensors
    (the wrong file picked from a run folder)."""
    args = argparse.Namespace(lr=0.01, epochs=10, arch="vgg16")
    Path(path).write_bytes(pickle.dumps(args))
    return Path(path)
