"""A damaged HDF5 intermediate is refused by the reader of the rule downstream of it,
with a message that names the file, what is wrong and the rule (and command) that
rebuilds it; and through snakemake the user sees that message, not a traceback.

Every intermediate is written by the workflow's own writer from real inputs: a real mp4
of a face photo (ffmpeg) through extract_shard (frames, audio), mediapipe through
detect_faces_shard (faces), build_face_template (template), DumpWriter (activations) and
write_cam_file (cam). Each copy is then damaged on disk: cut to its first 60% of bytes,
or emptied (0 bytes).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.demo.planted import read_frame_geometry
from traitlens.extract.audio_features import AudioParams
from traitlens.extract.extract_shard import extract_shard
from traitlens.extract.frames_file import open_frames
from traitlens.faces.detect_faces import detect_faces_shard
from traitlens.faces.face_template import (
    build_face_template,
    load_template,
    mean_aligned_face,
)
from traitlens.faces.faces_file import read_faces
from traitlens.faces.video_faces import FaceParams
from traitlens.ingest.labels import BIG_FIVE
from traitlens.ingest.sharding import assign_shards, shard_count
from traitlens.interpret.cam_face_overlap import face_overlap_table
from traitlens.interpret.cam_file import read_cam_file, write_cam_file
from traitlens.interpret.dump_file import (
    DumpWriter,
    dump_info,
    iter_maps,
    read_keys,
    read_reduction,
    read_top,
)
from traitlens.models.audio_model import read_audio_features
from traitlens.models.pixel_reader import PixelReader
from traitlens.models.train_data import build_index

from support.face_photos import astronaut, fit
from support.workflow import run_snakemake, write_config
from support.workflow_config import fi_config

W, H, N_FRAMES = 384, 216, 3
VIDEO_ID = "astro.001"


def face_clip(path: Path, n_frames: int = 10, fps: int = 10) -> Path:
    """An H.264 + AAC mp4 of the astronaut photo (mirrored every other frame)."""
    image = fit(astronaut(), W, H)
    frames = [image if k % 2 == 0 else image[:, ::-1] for k in range(n_frames)]
    cmd = ["ffmpeg", "-v", "error", "-y", "-nostdin", "-f", "rawvideo", "-pix_fmt", "rgb24"]
    cmd += ["-s", f"{W}x{H}", "-r", str(fps), "-i", "pipe:0"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    cmd += ["-t", f"{n_frames / fps}", "-map", "0:v", "-map", "1:a", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)]
    data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
    subprocess.run(cmd, input=data, check=True, capture_output=True)
    return path


def labels_table() -> pd.DataFrame:
    row = {"video_id": VIDEO_ID, "split": "test", **dict.fromkeys(BIG_FIVE, 0.5)}
    return pd.DataFrame([row])


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """One intermediate of each kind, written by the workflow's own writers."""
    root = tmp_path_factory.mktemp("intermediates")
    for folder in ("frames", "audio", "faces", "qc", "activations", "cam", "figures"):
        (root / folder).mkdir()
    video = face_clip(root / f"{VIDEO_ID}.mp4")
    files = {
        "frames": root / "frames/s000.h5",
        "audio": root / "audio/s000.h5",
        "faces": root / "faces/s000.h5",
        "template": root / "faces/template.h5",
        "activations": root / "activations/conv5_3.h5",
        "cam": root / "cam/img.h5",
    }
    rows = extract_shard(
        [(VIDEO_ID, str(video))],
        files["frames"],
        files["audio"],
        root / "qc/shard.tsv",
        N_FRAMES,
        W,
        H,
        AudioParams(),
        1,
        False,
    )
    assert rows[0]["status"] == "ok"
    detect_faces_shard(
        files["frames"], files["faces"], root / "qc/faces.tsv", FaceParams(aligned_size=64)
    )
    build_face_template([files["faces"]], files["template"], root / "figures/regions.png", 2)
    index = build_index("img", [files["frames"]], labels_table())
    keys = pd.DataFrame(
        {
            "video_id": index.video_id,
            "frame_index": index.frame_index,
            "split": index.split,
            "shard_file": ["s000.h5"] * len(index),
            "row": index.row,
        }
    )
    rng = np.random.default_rng(0)
    maps = rng.random((len(index), 4, 2, 2), dtype=np.float32)
    with DumpWriter(
        files["activations"], "face", "conv5_3", "face", 32, len(index), 4, (2, 2), 2, True, keys
    ) as writer:
        writer.add(0, maps)
    cam_maps = rng.random((len(index), len(BIG_FIVE), 2, 2), dtype=np.float32)
    predictions = rng.random((len(index), len(BIG_FIVE)), dtype=np.float32)
    write_cam_file(
        files["cam"], "img", "cam", "cam_conv", "img", 32, "test", index, cam_maps, predictions,
        traits=BIG_FIVE,
    )  # fmt: skip
    return files


def _overlap(files: dict[str, Path]) -> pd.DataFrame:
    return face_overlap_table([files["cam"]], [files["faces"]], [files["frames"]], 0.2)


# The rule that writes each kind of intermediate.
WRITER = {
    "frames": "extract_shard",
    "audio": "extract_shard",
    "faces": "detect_faces",
    "template": "build_face_template",
    "activations": "dump_activations",
    "cam": "compute_cam",
}
LABELS = labels_table()
# (damaged kind, the rule downstream that reads it, how that rule reads it)
READERS = [
    ("frames", "detect_faces", lambda f: open_frames(f["frames"])),
    ("frames", "train_visual img", lambda f: build_index("img", [f["frames"]], LABELS)),
    ("frames", "DataLoader img", lambda f: PixelReader("img", [str(f["frames"])])),
    ("frames", "validate_planted", lambda f: read_frame_geometry([f["frames"]])),
    ("frames", "cam_face_overlap", _overlap),
    ("audio", "train_linear_model", lambda f: read_audio_features([f["audio"]])),
    ("faces", "estimate_aus", lambda f: read_faces(f["faces"])),
    ("faces", "build_face_template", lambda f: mean_aligned_face([f["faces"]])),
    ("faces", "train_visual face", lambda f: build_index("face", [f["faces"]], LABELS)),
    ("faces", "DataLoader face", lambda f: PixelReader("face", [str(f["faces"])])),
    ("faces", "cam_face_overlap", _overlap),
    ("template", "find_detectors", lambda f: load_template(f["template"])),
    ("activations", "find_detectors", lambda f: read_keys(f["activations"])),
    ("activations", "find_au_detectors", lambda f: read_reduction(f["activations"], "max")),
    ("activations", "plot_unit_segmentation", lambda f: read_top(f["activations"])),
    ("activations", "dump_info", lambda f: dump_info(f["activations"])),
    ("activations", "iter_maps", lambda f: next(iter_maps(f["activations"], 4))),
    ("cam", "plot_cam", lambda f: read_cam_file(f["cam"])),
    ("cam", "cam_face_overlap", _overlap),
]
DAMAGE = {"truncated": "truncated (", "empty": "empty (0 bytes)"}


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)] if how == "truncated" else b"")


@pytest.mark.media
@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize(
    ("kind", "reader", "read"), READERS, ids=[f"{k}->{r}" for k, r, _ in READERS]
)
def test_damaged_file_names_itself_and_its_rule(good, tmp_path, how, kind, reader, read):
    files = {}
    for name, path in good.items():  # same folder layout and basenames, own copies
        files[name] = tmp_path / path.parent.name / path.name
        files[name].parent.mkdir(exist_ok=True)
        shutil.copyfile(path, files[name])
    read(files)  # the undamaged copies are read without complaint
    damage(files[kind], how)
    with pytest.raises(UserError) as err:
        read(files)
    message = str(err.value)
    assert message.startswith(f"{files[kind]}: not a readable HDF5"), (reader, message)
    assert DAMAGE[how] in message
    assert f"the {WRITER[kind]} rule rebuilds it" in message
    assert f"--forcerun {files[kind]}" in message


@pytest.mark.media
def test_truncation_reports_both_sizes(good, tmp_path):
    path = tmp_path / "s000.h5"
    shutil.copyfile(good["frames"], path)
    size = path.stat().st_size
    damage(path, "truncated")
    with pytest.raises(UserError) as err:
        open_frames(path)
    assert f"{int(size * 0.6)} bytes on disk of the {size} it was written with" in str(err.value)


@pytest.mark.media
def test_a_missing_or_foreign_file_says_so(good, tmp_path):
    with pytest.raises(UserError, match="does not exist.*detect_faces rule rebuilds it"):
        read_faces(tmp_path / "s009.h5")
    text = tmp_path / "s000.h5"
    text.write_text("video_id\tframe\n" * 50)
    with pytest.raises(UserError, match="not an HDF5 file.*extract_shard rule rebuilds it"):
        open_frames(text)


# --- through snakemake -----------------------------------------------------------------


@pytest.mark.workflow
def test_workflow_reports_a_truncated_frames_file_without_a_traceback(tmp_path):
    (tmp_path / "clips").mkdir()
    face_clip(tmp_path / "clips" / "one.mp4")
    header = "\t".join(["video_id", "path", "split", *BIG_FIVE])
    (tmp_path / "mine.tsv").write_text(
        f"{header}\np01\tclips/one.mp4\ttrain\t0.5\t0.4\t0.3\t0.2\t0.1\n"
    )
    config = fi_config(tmp_path)
    config["dataset"] = {
        "name": "mine",
        "format": "manifest",
        "manifest": str(tmp_path / "mine.tsv"),
    }
    configfile = write_config(tmp_path / "mine.yaml", config)
    n_shards = shard_count(1, config["sharding"]["videos_per_shard"])
    (shard,) = assign_shards(["p01"], n_shards)
    frames = f"results/mine/frames/{shard}.h5"
    faces = f"results/mine/faces/{shard}.h5"
    made = run_snakemake(tmp_path, configfile, frames)
    assert made.returncode == 0, made.stderr[-3000:]
    damage(tmp_path / frames, "truncated")

    # Targets first: --forcerun takes every name that follows it.
    result = run_snakemake(tmp_path, configfile, faces, "--forcerun", "detect_faces")
    assert result.returncode != 0
    shown = result.stdout + result.stderr
    log = (tmp_path / f"results/mine/logs/faces/{shard}.log").read_text()
    for text in (shown, log):
        assert f"{frames}: not a readable HDF5 frames file: the file is truncated" in text
        assert "extract_shard rule rebuilds it" in text and f"--forcerun {frames}" in text
        assert "Traceback" not in text
    assert not (tmp_path / faces).exists()

    # The advice works: rebuilding the frames file lets detect_faces run.
    again = run_snakemake(tmp_path, configfile, faces, "--forcerun", frames)
    assert again.returncode == 0, again.stderr[-3000:]
