"""A generated demo video through real extraction and the face stage, against its truth.

The demo renderer knows where every landmark of its face really is in every frame; the
clip is encoded with ffmpeg, extracted into a frame box of another shape (so the stored
frames are scaled and padded), and the face stage must find the face in every frame
and put the true eye centres where the config says.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from traitlens.extract.audio_features import AudioParams
from traitlens.extract.extract_shard import extract_shard
from traitlens.faces.alignment import apply_affine, eye_centres, target_eyes
from traitlens.faces.detect_faces import detect_faces_shard
from traitlens.faces.faces_qc import read_face_qc
from traitlens.faces.video_faces import FaceParams, box_iou

pytestmark = pytest.mark.media

DEMO = {
    "seed": 7,
    "n_videos": 3,
    "n_identities": 1,
    "split_by": "clip",  # fewer persons than splits
    "duration_s": 1.0,
    "fps": 30,
    "width": 384,
    "height": 216,
    "noise_sd": 0.04,
}
BOX = (320, 240)  # stored frames: the 384x216 clip fitted into 320x240 (padded above/below)
PARAMS = FaceParams(aligned_size=112, region_dilation_px=2)  # the demo's (config.yaml)


@pytest.fixture(scope="module")
def demo_shard(tmp_path_factory):
    from traitlens.demo import audio_synth, encode
    from traitlens.demo.generate import build_identities
    from traitlens.demo.plan import DemoConfig, plan_videos
    from traitlens.demo.render import VideoRenderer
    from traitlens.demo.signal import video_signal

    root = tmp_path_factory.mktemp("faces_demo")
    cfg = DemoConfig.from_mapping(DEMO)
    people, _ = build_identities(cfg)
    video = plan_videos(cfg)[0]
    renderer = VideoRenderer(people[video.identity], video_signal(video, cfg), cfg)
    rendered = list(renderer.frames())
    wav, mp4 = root / "silence.wav", root / f"{video.video_id}.mp4"
    audio_synth.write_wav(wav, np.zeros(16000))
    encode.encode_mp4((f.rgb for f in rendered), wav, mp4, cfg.width, cfg.height, cfg.fps)
    frames = root / "frames" / "s000.h5"
    extract_shard(
        [(video.video_id, str(mp4))],
        frames,
        root / "audio" / "s000.h5",
        root / "qc" / "shards" / "s000.tsv",
        frames_per_video=10,
        frame_width=BOX[0],
        frame_height=BOX[1],
        audio=AudioParams(),
        progress=False,
    )
    faces, qc = root / "faces" / "s000.h5", root / "qc" / "faces" / "s000.tsv"
    detect_faces_shard(frames, faces, qc, PARAMS, progress=False)
    return rendered, frames, faces, qc


def _to_stored(points, content_box, size):
    """Video pixels -> stored-frame pixels (pixel centres), given the content box."""
    x, y, w, h = content_box
    scale = np.array([w / size[0], h / size[1]])
    return (np.asarray(points) + 0.5) * scale - 0.5 + [x, y]


def test_every_demo_frame_has_its_face(demo_shard):
    rendered, frames, faces, qc = demo_shard
    with h5py.File(frames) as fr, h5py.File(faces) as f:
        assert f["success"][:].all() and len(f["success"]) == 10
        np.testing.assert_array_equal(f["frame_index"][:], fr["frame_index"][:])
        content = fr["content_box"][0]
        assert tuple(content) == (0, 30, 320, 180)
        for i, k in enumerate(f["frame_index"][:]):
            true = _to_stored(rendered[k].landmarks, content, (384, 216))
            found = f["landmarks"][i][:, :2]
            iou = box_iou([*found.min(axis=0), *found.max(axis=0)], [*true.min(0), *true.max(0)])
            assert iou[0, 0] > 0.85
    assert read_face_qc(qc)["n_faces"].tolist() == [10]


def test_true_eyes_land_where_the_config_says(demo_shard):
    rendered, frames, faces, _ = demo_shard
    target = target_eyes(PARAMS.aligned_size, PARAMS.eye_distance, PARAMS.eye_y)
    errors = []
    with h5py.File(frames) as fr, h5py.File(faces) as f:
        content = fr["content_box"][0]
        for i, k in enumerate(f["frame_index"][:]):
            true = _to_stored(rendered[k].landmarks, content, (384, 216))
            placed = apply_affine(eye_centres(true), f["transform"][i])
            errors.append(np.hypot(*(placed - target).T).max())
    assert max(errors) < 2.0, errors
