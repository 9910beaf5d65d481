"""A tiny demo data set generated for real (mediapipe, ffmpeg): format, truth, determinism."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.demo import au_mesh, signal
from traitlens.demo.generate import default_outputs, generate
from traitlens.demo.plan import DemoConfig, plan_videos

TINY = {
    "seed": 11,
    "n_videos": 4,
    "n_identities": 2,
    "split_by": "clip",  # fewer persons than splits
    "duration_s": 1.0,
    "fps": 30,
    "width": 256,
    "height": 144,
    "noise_sd": 0.04,
    "ground_truth": "unused",
}


def _generate(root: Path, threads: int) -> Path:
    videos, annotations, truth = default_outputs(root, TINY)
    generate(TINY, videos, annotations, truth, threads=threads, progress=False)
    return root


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("demo_a"), threads=1)


@pytest.fixture(scope="module")
def run_b(tmp_path_factory):
    # a second run, through the process pool: must give the same bytes
    return _generate(tmp_path_factory.mktemp("demo_b"), threads=2)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_streams",
            "-count_frames",
            "-of",
            "json",
            "file:" + os.path.abspath(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _decode(path: Path, w: int, h: int) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            "file:" + os.path.abspath(path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def _frames_tsv(root: Path) -> list[dict]:
    with (root / "ground_truth" / "frames.tsv").open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.mark.media
def test_videos_are_fi_named_h264_aac(run_a):
    plan = plan_videos(TINY)
    names = sorted(p.name for p in (run_a / "videos").iterdir())
    assert names == sorted(v.filename for v in plan)
    assert any(n.startswith("-") for n in names)
    for name in names:
        streams = {s["codec_type"]: s for s in _ffprobe(run_a / "videos" / name)["streams"]}
        video, audio = streams["video"], streams["audio"]
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert (video["width"], video["height"]) == (256, 144)
        assert video["r_frame_rate"] == "30/1" and int(video["nb_read_frames"]) == 30
        assert audio["codec_name"] == "aac" and float(audio["duration"]) > 0.9


@pytest.mark.media
def test_annotation_pickles_like_first_impressions(run_a):
    plan = plan_videos(TINY)
    seen = {}
    for split in ("training", "validation", "test"):
        with (run_a / f"annotation_{split}.pkl").open("rb") as fh:
            labels = pickle.load(fh, encoding="latin1")
        assert set(labels) == set(signal.TRAITS)
        names = {v.filename for v in plan if v.split == split}
        for values in labels.values():
            assert set(values) == names
            for value in values.values():
                assert type(value) is np.float64 and 0.0 <= value <= 1.0
        seen.update({n: split for n in names})
    assert len(seen) == len(plan)


@pytest.mark.media
def test_pickles_pass_the_safe_label_loader(run_a):
    from traitlens.ingest.labels import load_label_pickle

    labels = load_label_pickle(run_a / "annotation_training.pkl")
    assert set(labels) == set(signal.TRAITS)


def test_pickle_bytes_match_python2_layout():
    from traitlens.demo.fi_pickle import dumps_labels

    from support.pickles import python2_label_pickle

    labels = {"extraversion": {"--abcdefghi.001.mp4": 0.25}, "openness": {"x.002.mp4": 1.0}}
    assert dumps_labels(labels) == python2_label_pickle(labels)


@pytest.mark.media
def test_same_seed_gives_identical_files(run_a, run_b):
    a, b = _files(run_a), _files(run_b)
    assert set(a) == set(b)
    truth = [k for k in a if not k.endswith(".mp4")]
    assert len(truth) == 6  # three pickles + frames.tsv, videos.tsv, planted.json
    for key in truth:
        assert a[key] == b[key], key
    # x264 runs single-threaded with bitexact flags: the videos are identical too
    for key in (k for k in a if k.endswith(".mp4")):
        assert a[key] == b[key], key


@pytest.mark.media
def test_ground_truth_content(run_a):
    rows = _frames_tsv(run_a)
    cfg = DemoConfig.from_mapping(TINY)
    assert len(rows) == cfg.n_videos * cfg.n_frames
    columns = au_mesh.load_model().au_columns
    for au in columns:
        values = np.array([float(r[au]) for r in rows])
        if au in signal.PLANTED_AUS:
            assert values.std() > 0.03, au
        else:
            assert not values.any(), au
    doc = json.loads((run_a / "ground_truth" / "planted.json").read_text())
    assert set(doc["planted_aus"]) == set(signal.PLANTED_AUS)
    assert doc["regions"]["nose"]["carries_signal"] is False
    for region in ("eyebrows", "eyes", "mouth"):
        assert doc["regions"][region]["carries_signal"] is True
    assert set(doc["traits"]["formulas"]) == set(signal.TRAITS)
    with (run_a / "ground_truth" / "videos.tsv").open() as fh:
        videos = list(csv.DictReader(fh, delimiter="\t"))
    with (run_a / "annotation_training.pkl").open("rb") as fh:
        training = pickle.load(fh, encoding="latin1")
    for row in videos:
        if row["split"] == "training":
            assert float(row["openness"]) == training["openness"][row["video_id"] + ".mp4"]
    # one room per person (demo.background per_user, the default): the walls' colour is
    # the same for a person's clips and differs between the two people
    room = {(r["identity"], r["bg_hue"], r["bg_sat"], r["bg_val"]) for r in videos}
    assert len(room) == len({r["identity"] for r in videos}) == 2
    assert "per person" in doc["nuisance"]["background"]


@pytest.mark.media
def test_mediapipe_finds_the_face_and_the_true_box(run_a):
    from traitlens.demo.bases import FaceMeshDetector

    boxes = {(r["video_id"], int(r["frame_index"])): r for r in _frames_tsv(run_a)}
    found, ious = 0, []
    videos = sorted((run_a / "videos").iterdir())
    with FaceMeshDetector(static=False) as det:
        for path in videos:
            video_id = path.name[: -len(".mp4")]
            for t, frame in enumerate(_decode(path, 256, 144)):
                lms = det.landmarks(frame)
                if lms is None:
                    continue
                found += 1
                row = boxes[(video_id, t)]
                truth = [float(row[k]) for k in ("face_x0", "face_y0", "face_x1", "face_y1")]
                ious.append(_iou([*lms.min(axis=0), *lms.max(axis=0)], truth))
    total = len(boxes)
    assert found / total >= 0.99
    assert min(ious) >= 0.8 and np.mean(ious) >= 0.9, (min(ious), np.mean(ious))


@pytest.mark.media
def test_signal_region_boxes_are_where_mediapipe_finds_those_regions(run_a):
    """The truth a CAM should point at (the boxes of the regions the planted AUs move)
    against mediapipe's own landmarks of each region on the decoded frames; a region's
    box set against another region's is the negative control."""
    from traitlens.demo.bases import FaceMeshDetector
    from traitlens.demo.regions import region_landmarks

    rows = {(r["video_id"], int(r["frame_index"])): r for r in _frames_tsv(run_a)}
    names = ("eyebrows", "eyes", "mouth")
    same, other = {n: [] for n in names}, []
    with FaceMeshDetector(static=False) as det:
        for path in sorted((run_a / "videos").iterdir()):
            video_id = path.name[: -len(".mp4")]
            for t, frame in enumerate(_decode(path, 256, 144)):
                lms = det.landmarks(frame)
                if lms is None:
                    continue
                row = rows[(video_id, t)]
                truth = {
                    n: [float(row[f"{n}_{c}"]) for c in ("x0", "y0", "x1", "y1")] for n in names
                }
                face = [float(row[f"face_{c}"]) for c in ("x0", "y0", "x1", "y1")]
                for n in names:
                    pts = lms[list(region_landmarks()[n])]
                    same[n].append(_iou([*pts.min(axis=0), *pts.max(axis=0)], truth[n]))
                    assert face[0] <= truth[n][0] < truth[n][2] <= face[2]  # inside the face
                pts = lms[list(region_landmarks()["mouth"])]
                other.append(_iou([*pts.min(axis=0), *pts.max(axis=0)], truth["eyebrows"]))
    for n in names:
        assert np.median(same[n]) >= 0.6, (n, np.median(same[n]))
    assert max(other) < 0.05


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_output_list_must_match_the_plan(tmp_path):
    videos, annotations, truth = default_outputs(tmp_path, TINY)
    with pytest.raises(UserError, match="does not match the plan"):
        generate(TINY, videos[:-1], annotations, truth, progress=False)


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    videos, annotations, truth = default_outputs(tmp_path, TINY)
    with pytest.raises(UserError, match="ffmpeg not found"):
        generate(TINY, videos, annotations, truth, progress=False)


@pytest.mark.media
def test_planted_landmarks_land_where_the_ground_truth_says():
    """Full chain on a real identity (AU->mesh, warp, resize, head pose): dots drawn at
    rest landmarks on the identity's canvas end up at the frame's true landmarks, and
    the frame's inverse map sends every true landmark back to its rest position."""
    import dataclasses

    import cv2
    from scipy.spatial import Delaunay

    from traitlens.demo import generate as gen
    from traitlens.demo import regions
    from traitlens.demo.render import VideoRenderer

    # the tolerances below are in pixels, set for a face of 0.4-0.5 of the frame height
    tiny = {**TINY, "face_height": [0.4, 0.5]}
    cfg = DemoConfig.from_mapping({**tiny, "width": 384, "height": 216})
    people, _ = gen.build_identities(DemoConfig.from_mapping({**tiny, "n_identities": 1}))
    person = people[0]
    marks = [61, 291, 105, 334, 17, 152, 1]
    h, w = person.rgba.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    dots = np.zeros((h, w), np.float32)
    for x, y in person.landmarks[marks]:
        dots += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    canvas = np.dstack([np.repeat((255 * dots)[..., None], 3, axis=2), np.full((h, w), 255.0)])
    marker = dataclasses.replace(person, rgba=np.clip(canvas, 0, 255).astype(np.uint8))
    sig = signal.video_signal(plan_videos(cfg)[0], cfg)
    n = cfg.n_frames
    flat = dataclasses.replace(
        sig.nuisance, gain=np.ones(n), gamma=np.ones(n), side=np.zeros(n), roll_deg=np.full(n, 6.0)
    )
    strong = {a: np.full(n, 0.6 * spec.cap) for a, spec in signal.PLANTED_AUS.items()}
    renderer = VideoRenderer(marker, dataclasses.replace(sig, nuisance=flat, au=strong), cfg)
    frame = renderer.render(0)
    rest_in_frame = renderer.rest @ renderer.placement(0)[:, :2].T + renderer.placement(0)[:, 2]
    moved = np.hypot(*(frame.landmarks - rest_in_frame).T)
    assert moved[[61, 291, 105, 159, 17]].min() > 0.5  # the planted AUs really move them

    # dots (the eyelids are left out: closing eyes squash a dot unevenly, which biases
    # its centroid by ~1 px though the landmark itself is exact, see below)
    gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    fy, fx = np.mgrid[0 : cfg.height, 0 : cfg.width]
    for k in marks:
        px, py = frame.landmarks[k]
        win = (np.abs(fx - px) <= 3) & (np.abs(fy - py) <= 3)
        wts = np.clip(gray - np.median(gray[win]), 0, None) * win
        cx, cy = (wts * fx).sum() / wts.sum(), (wts * fy).sum() / wts.sum()
        assert np.hypot(cx - px, cy - py) < 0.4, k

    # geometry, exactly: output pixels around each true landmark sample the source at
    # points that the exact piecewise-affine forward map sends back onto those pixels
    ctrl_disp, _ = renderer.landmarks_at(0)
    place = renderer.placement(0)
    map_x, map_y = renderer.field.inverse_maps(
        ctrl_disp, cv2.invertAffineTransform(place), (cfg.height, cfg.width)
    )
    tri = Delaunay(renderer.field.points)
    assert np.array_equal(tri.simplices, renderer.field.simplices)
    full = np.zeros((len(renderer.field.points), 2))
    full[: len(ctrl_disp)] = ctrl_disp
    residuals = []
    # the inner-lip points are left out: the closed rest mouth makes sub-pixel-thin
    # triangles there that the jaw drop stretches ~10x, and the renderer paints that
    # opening over (the dark mouth polygon is drawn at the true landmarks)
    for k, (px, py) in enumerate(frame.landmarks[: au_mesh.N_MESH]):
        if k in regions.INNER_LIPS:
            continue
        qx, qy = np.meshgrid(
            np.arange(round(px) - 1, round(px) + 2), np.arange(round(py) - 1, round(py) + 2)
        )
        if qx.min() < 0 or qy.min() < 0 or qx.max() >= cfg.width or qy.max() >= cfg.height:
            continue
        src = np.stack([map_x[qy, qx].ravel(), map_y[qy, qx].ravel()], axis=1).astype(float)
        simplex = tri.find_simplex(src)
        trans = tri.transform[simplex]
        b = np.einsum("nij,nj->ni", trans[:, :2], src - trans[:, 2])
        bary = np.concatenate([b, 1 - b.sum(axis=1, keepdims=True)], axis=1)
        moved = src + np.einsum("nk,nkd->nd", bary, full[tri.simplices[simplex]])
        back = moved @ place[:, :2].T + place[:, 2]
        residuals.append(np.hypot(back[:, 0] - qx.ravel(), back[:, 1] - qy.ravel()))
    residuals = np.concatenate(residuals)
    assert np.percentile(residuals, 99) < 0.1 and residuals.max() < 0.35, residuals.max()
