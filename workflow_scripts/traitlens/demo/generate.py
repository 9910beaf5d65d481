"""Generate the planted-signal demo data set: videos, annotation pickles, ground truth.

The parent plans the videos, draws every video's signal, finds the base photos'
landmarks (mediapipe) and builds the identities; videos are then rendered and encoded
one per task, in a process pool when ``threads > 1`` (spawned workers: no fork after
mediapipe and OpenCV have started threads). Every output is written under a temporary
name and renamed, so an interrupted run leaves no truncated file behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from traitlens.core.atomic import atomic_path, write_text_atomic
from traitlens.core.errors import UserError
from traitlens.demo import au_mesh, audio_synth, bases, encode, fi_pickle, ground_truth
from traitlens.demo import identities as ids
from traitlens.demo.plan import SPLITS, DemoConfig, PlannedVideo, plan_videos
from traitlens.demo.render import VideoRenderer
from traitlens.demo.signal import VideoSignal, video_signal

log = logging.getLogger("traitlens.demo")

# identity canvases are built once, a little larger than any clip needs (downscaled later)
# the largest face a clip draws, over the upper end of demo.face_height: a clip's face
# is up to 5% larger and its head scale wanders by up to 3%
FACE_HEIGHT_MARGIN = 1.1


@dataclass(frozen=True)
class RenderedVideo:
    video_id: str
    boxes: np.ndarray  # (n_frames, 4 * (1 + signal regions)): face box, then region boxes
    face_width_px: float
    background: dict


def render_video(
    identity: ids.Identity, sig: VideoSignal, cfg: DemoConfig, out_path: str | Path
) -> RenderedVideo:
    """Render, synthesise the voice and encode one video to ``out_path`` (atomically)."""
    renderer = VideoRenderer(identity, sig, cfg)
    boxes = np.zeros((cfg.n_frames, 4 * (1 + len(ground_truth.SIGNAL_REGIONS))))

    def frames():
        for t, frame in enumerate(renderer.frames()):
            boxes[t] = [
                *frame.box,
                *(v for r in ground_truth.SIGNAL_REGIONS for v in frame.region_box(r)),
            ]
            yield frame.rgb

    samples = audio_synth.synthesize_voice(sig.audio, cfg.n_frames / cfg.fps, sig.video.seed)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix=".tmp-demo-", dir=out_path.parent) as tmp:
        wav = Path(tmp) / "voice.wav"
        audio_synth.write_wav(wav, samples)
        with atomic_path(out_path) as tmp_mp4:
            encode.encode_mp4(frames(), wav, tmp_mp4, cfg.width, cfg.height, cfg.fps)
    return RenderedVideo(
        sig.video.video_id, boxes, float(renderer.size[0]), renderer.background_params
    )


# --- process pool plumbing: identities are sent once per worker ---------------------
_WORKER: dict = {}


def _init_worker(identities: list[ids.Identity], cfg: DemoConfig) -> None:
    cv2.setNumThreads(1)
    _WORKER["identities"] = identities
    _WORKER["cfg"] = cfg


def _work(sig: VideoSignal, out_path: str) -> RenderedVideo:
    identity = _WORKER["identities"][sig.video.identity]
    return render_video(identity, sig, _WORKER["cfg"], out_path)


@contextlib.contextmanager
def _single_threaded_blas():
    """One BLAS/OpenMP thread, here and in spawned workers.

    The generator's linear algebra is tiny (2x2 barycentric transforms, 2-D SVDs), and
    OpenBLAS's idle threads spin: on a 2-core machine they starved the real work
    (measured: identities 0.7 s single-threaded vs 2-8 s; scipy's first find_simplex
    in a worker 0.1-2.4 s instead of 2 ms). Workers inherit the environment variables;
    this process is limited through threadpoolctl when it is installed.
    """
    keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional (scikit-learn brings it): only slower without
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    try:
        with limits:
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _progress(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the requirements; stay usable without it
        return None
    return tqdm(total=total, desc="demo videos", unit="video", disable=not enabled)


def build_identities(cfg: DemoConfig) -> tuple[list[ids.Identity], list[str]]:
    photos = bases.load_bases()
    names = [b.name for b in photos]
    by_name = {b.name: b for b in photos}
    mesh_h = np.ptp(au_mesh.load_model().mean_mesh[: au_mesh.N_MESH, 1])
    px_per_unit = FACE_HEIGHT_MARGIN * cfg.face_height[1] * cfg.height / mesh_h
    people = [
        ids.make_identity(ids.draw_identity_params(k, names, cfg.seed), by_name, px_per_unit)
        for k in range(cfg.n_identities)
    ]
    return people, names


def _check_outputs(plan: Sequence[PlannedVideo], video_paths: Sequence[str | Path]) -> list[Path]:
    paths = [Path(p) for p in video_paths]
    by_name = {p.name: p for p in paths}
    missing = [v.filename for v in plan if v.filename not in by_name]
    if missing or len(paths) != len(plan):
        raise UserError(
            f"demo generator: the output video list does not match the plan from the demo "
            f"config ({len(paths)} paths for {len(plan)} planned videos; first missing: "
            f"{missing[:3]}); the rule must take its outputs from plan_videos()"
        )
    return [by_name[v.filename] for v in plan]


def generate(
    demo_cfg: Mapping,
    video_paths: Sequence[str | Path],
    annotation_paths: Mapping[str, str | Path],
    ground_truth_dir: str | Path,
    threads: int = 1,
    progress: bool = True,
) -> dict:
    """Write the whole demo data set; returns a small summary (counts, seconds)."""
    with _single_threaded_blas():
        return _generate(
            demo_cfg, video_paths, annotation_paths, ground_truth_dir, threads, progress
        )


def _generate(demo_cfg, video_paths, annotation_paths, ground_truth_dir, threads, progress):
    start = time.perf_counter()
    cfg = DemoConfig.from_mapping(demo_cfg)
    encode.ffmpeg_binary()
    plan = plan_videos(cfg)
    paths = _check_outputs(plan, video_paths)
    signals = [video_signal(v, cfg) for v in plan]
    people, base_names = build_identities(cfg)
    log.info(
        "demo: %d videos, %d identities from %d base photos (%s), %d frames each, %d workers",
        len(plan),
        len(people),
        len(base_names),
        ", ".join(base_names),
        cfg.n_frames,
        threads,
    )
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)

    results: dict[str, RenderedVideo] = {}
    bar = _progress(len(plan), progress)
    if threads <= 1:
        for sig, path in zip(signals, paths, strict=True):
            results[sig.video.video_id] = render_video(people[sig.video.identity], sig, cfg, path)
            if bar is not None:
                bar.update()
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=threads, mp_context=ctx, initializer=_init_worker, initargs=(people, cfg)
        ) as pool:
            futures = [pool.submit(_work, s, str(p)) for s, p in zip(signals, paths, strict=True)]
            for fut in as_completed(futures):
                res = fut.result()
                results[res.video_id] = res
                if bar is not None:
                    bar.update()
    if bar is not None:
        bar.close()

    write_labels(signals, annotation_paths)
    write_ground_truth(cfg, demo_cfg, signals, results, people, base_names, ground_truth_dir)
    seconds = time.perf_counter() - start
    log.info("demo: generated in %.1f s", seconds)
    return {"videos": len(plan), "seconds": seconds}


def write_labels(signals: Sequence[VideoSignal], annotation_paths: Mapping[str, str | Path]):
    """The three annotation pickles (First Impressions layout)."""
    for split, labels in ground_truth.labels_by_split(signals).items():
        with atomic_path(annotation_paths[split]) as tmp:
            tmp.write_bytes(fi_pickle.dumps_labels(labels))


def write_ground_truth(
    cfg: DemoConfig,
    demo_cfg: Mapping,
    signals: Sequence[VideoSignal],
    results: Mapping[str, RenderedVideo],
    people: Sequence[ids.Identity],
    base_names: Sequence[str],
    out_dir: str | Path,
) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    au_columns = au_mesh.load_model().au_columns
    frame_lines, video_lines = [], []
    for sig in signals:
        res = results[sig.video.video_id]
        frame_lines += ground_truth.frame_rows(
            sig, au_columns, res.boxes, res.face_width_px, cfg.fps
        )
        identity = people[sig.video.identity].params.as_dict()
        video_lines.append(ground_truth.video_row(sig, identity, res.background))
    write_text_atomic(
        out_dir / "frames.tsv",
        ground_truth.tsv(ground_truth.frames_header(au_columns), frame_lines),
    )
    write_text_atomic(
        out_dir / "videos.tsv", ground_truth.tsv(ground_truth.videos_header(), video_lines)
    )
    identities = [p.params.as_dict() for p in people]
    write_text_atomic(
        out_dir / "planted.json", ground_truth.planted_json(cfg, demo_cfg, identities, base_names)
    )


def default_outputs(
    root: str | Path, demo_cfg: Mapping
) -> tuple[list[Path], dict[str, Path], Path]:
    """Output paths in the layout the workflow uses, under ``root`` (for tests, tools)."""
    root = Path(root)
    plan = plan_videos(demo_cfg)
    videos = [root / "videos" / v.filename for v in plan]
    annotations = {s: root / f"annotation_{s}.pkl" for s in SPLITS}
    return videos, annotations, root / "ground_truth"


def main_cli(argv: Sequence[str] | None = None) -> None:
    """``python -m traitlens.demo.generate OUT_DIR [--threads N] [--set key=value ...]``."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--set", action="append", default=[], help="demo key, e.g. n_videos=4")
    args = parser.parse_args(argv)
    demo_cfg = dict(yaml.safe_load(Path(args.config).read_text())["demo"])
    for item in args.set:
        key, _, value = item.partition("=")
        demo_cfg[key] = yaml.safe_load(value)
    videos, annotations, gt = default_outputs(args.out_dir, demo_cfg)
    print(generate(demo_cfg, videos, annotations, gt, threads=args.threads))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main_cli()
