"""Face stage frames/s on 720p frames on one core, against bare mediapipe face mesh.

Command (repository root): .venv/bin/python bench/bench_faces.py --repeats 5

Two sets of 150 frames at 1280x720 (15 demo videos x 10 evenly spaced frames, rendered
by the demo generator at 720p): "large faces" as rendered (faces ~300 px wide), and
"small faces", the same pictures shrunk to 30-50% and placed on a plain background
(faces ~90-150 px, more like a person filmed from further away). Each set is stored as
a frames/<shard>.h5 like extract_shard writes. Cases, interleaved within each repeat:

* face stage: ``detect_faces_shard`` frames.h5 -> faces.h5 + QC (reading, full-range
  detection, main-face choice, landmarks, alignment, writing), graphs built beforehand;
* bare face mesh, static: ``solutions.face_mesh`` static_image_mode=True, 478 landmarks,
  over the same frames in memory; the reference the ratio is taken against;
* bare face mesh, video mode: static_image_mode=False, frames in shard order;
* parts of the stage: the full-range detector alone; the landmark model alone (given
  the detections); the short-range detector alone (not used: for comparison).

The process is pinned to one core. Figures are medians over repeats; "x bare mesh" is
the median of the per-repeat ratios of a case's time to bare static face mesh's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from traitlens.extract.frame_plan import evenly_spaced_indices  # noqa: E402
from traitlens.faces.detect_faces import detect_faces_shard  # noqa: E402
from traitlens.faces.mediapipe_face import (  # noqa: E402
    FaceDetector,
    FaceMeshDetector,
    LandmarkModel,
    mediapipe_version,
)
from traitlens.faces.video_faces import FaceParams  # noqa: E402

WIDTH, HEIGHT = 1280, 720
N_VIDEOS, PER_VIDEO = 15, 10


def render_720p(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(frames, video index) of 15 demo videos x 10 evenly spaced frames at 720p."""
    from traitlens.demo.generate import build_identities
    from traitlens.demo.plan import DemoConfig, plan_videos
    from traitlens.demo.render import VideoRenderer
    from traitlens.demo.signal import video_signal

    demo = dict(seed=seed, n_videos=N_VIDEOS, n_identities=6, duration_s=4.0, fps=30)
    cfg = DemoConfig.from_mapping({**demo, "width": WIDTH, "height": HEIGHT, "noise_sd": 0.04})
    people, _ = build_identities(cfg)
    frames, index = [], []
    for j, video in enumerate(plan_videos(cfg)):
        renderer = VideoRenderer(people[video.identity], video_signal(video, cfg), cfg)
        for k in evenly_spaced_indices(cfg.n_frames, PER_VIDEO):
            frames.append(renderer.render(int(k)).rgb)
            index.append(j)
    return np.stack(frames), np.array(index, np.int32)


def shrink_onto_background(frames: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Each video's frames shrunk to 30-50% and placed at a fixed spot on a plain,
    slightly textured background (its own top-left corner, blown up and blurred)."""
    out = np.empty_like(frames)
    for i, (frame, j) in enumerate(zip(frames, index, strict=True)):
        rng = np.random.default_rng(int(j))
        scale = (0.5, 0.35, 0.3, 0.45, 0.4)[j % 5]
        w, h = int(WIDTH * scale), int(HEIGHT * scale)
        x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(0, HEIGHT - h))
        background = cv2.resize(frame[:40, :40], (WIDTH, HEIGHT))
        out[i] = cv2.GaussianBlur(background, (0, 0), 3)
        out[i, y : y + h, x : x + w] = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return out


def write_frames(path: Path, frames: np.ndarray, index: np.ndarray) -> Path:
    """The frames as extract_shard stores them (datasets the face stage reads)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("frames", data=frames, chunks=(1, *frames.shape[1:]))
        f.create_dataset("video_index", data=index)
        f.create_dataset("frame_index", data=np.tile(np.arange(PER_VIDEO), N_VIDEOS))
        ids = np.array([f"video{j:02d}.001" for j in range(N_VIDEOS)], dtype=object)
        f.create_dataset("video_id", data=ids, dtype=h5py.string_dtype())
    return path


def _timed(fn):
    start = time.perf_counter()
    found = fn()
    return time.perf_counter() - start, found


def run_cases(frames, frames_h5, out_dir, models, detections, params):
    detector, landmarker, short, mesh_static, mesh_video = models

    def stage():
        rows = detect_faces_shard(
            frames_h5, out_dir / "faces.h5", out_dir / "qc.tsv", params, progress=False,
            models=(detector, landmarker),
        )  # fmt: skip
        return sum(int(r["n_faces"]) for r in rows)

    def bare(mesh):
        return lambda: sum(mesh.landmarks(f) is not None for f in frames)

    def detect(model):
        return lambda: sum(bool(model.detect(f)) for f in frames)

    def landmarks_only():
        pairs = [(f, d[0]) for f, d in zip(frames, detections, strict=True) if d]
        return sum(landmarker.landmarks(f, d) is not None for f, d in pairs)

    return {
        "face stage (detect_faces_shard)": stage,
        "bare face mesh, static": bare(mesh_static),
        "bare face mesh, video mode": bare(mesh_video),
        "part: full-range detector": detect(detector),
        "part: landmark model on the detection": landmarks_only,
        "not used: short-range detector": detect(short),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: first)")
    args = parser.parse_args()
    core = args.core if args.core is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    load_before = os.getloadavg()[0]

    large, index = render_720p()
    sets = {"large faces": large, "small faces": shrink_onto_background(large, index)}
    params = FaceParams()
    start = time.perf_counter()
    models = (
        FaceDetector(params.min_detection_confidence),
        LandmarkModel(params.min_landmark_confidence),
        FaceDetector(params.min_detection_confidence, full_range=False),
        FaceMeshDetector(static=True),
        FaceMeshDetector(static=False),
    )
    build_s = time.perf_counter() - start
    times: dict = {}
    found: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = {}
        for name, frames in sets.items():
            frames_h5 = write_frames(tmp / f"{name.replace(' ', '_')}.h5", frames, index)
            detections = [models[0].detect(f) for f in frames]
            cases[name] = run_cases(list(frames), frames_h5, tmp, models, detections, params)
            cases[name]["face stage (detect_faces_shard)"]()  # warm-up (file cache, graphs)
        for _ in range(args.repeats):
            for name, by_case in cases.items():
                for case, fn in by_case.items():
                    seconds, n = _timed(fn)
                    times.setdefault((name, case), []).append(seconds)
                    found[name, case] = n
    load_after = os.getloadavg()[0]
    n = N_VIDEOS * PER_VIDEO
    print(
        f"mediapipe {mediapipe_version()}, core {core}, {args.repeats} repeats, "
        f"load average {load_before:.2f} before, {load_after:.2f} after; "
        f"building the five graphs took {build_s:.2f} s (once per job, not in the figures)\n"
    )
    print("| frames | case | seconds | frames/s | x bare mesh (static) | faces found |")
    print("|---|---|---|---|---|---|")
    for name in sets:
        reference = times[name, "bare face mesh, static"]
        for case in cases[name]:
            t = times[name, case]
            ratio = statistics.median(a / b for a, b in zip(t, reference, strict=True))
            med = statistics.median(t)
            print(
                f"| {name} | {case} | {med:.3f} | {n / med:.0f} | {ratio:.2f} "
                f"| {found[name, case]}/{n} |"
            )


if __name__ == "__main__":
    main()
