"""Benchmark: rule cam_face_overlap's table at First Impressions' shape.

What it times: ``traitlens.interpret.cam_face_overlap.face_overlap_table``, the whole of
the rule's work but its figure, on two CAM files (the rule's sources img and
img_gradcam) of ``--frames`` test frames x 5 traits, 14 x 14 maps (VGG16 at 224 px) over
640 x 360 frames (config/first_impressions.yaml), in 4 shards. Each map is what a CAM
looks like: one or two smooth blobs, one of them near the face, and cell noise, so that
the binarised maps have a main region and some stray ones. The files are written once
into ``--workdir`` (reused by later runs), so a run reads them and measures the work.

``--results DIR`` times a run's own files instead (its results/<name> folder: the CAM
files given ``--repeat`` times over, its frames and faces), e.g. the full-size First
Impressions run of bench/bench_first_impressions.py or tests/test_workflow_first_impressions.py.

``--code DIR`` imports traitlens from another checkout's workflow_scripts: the baseline
side of a paired comparison (an older commit checked out with ``git worktree``).
``--threads`` is passed on when the code takes it.

Command (repository root), as in bench/README.md, "CAM overlap":
  git worktree add /tmp/traitlens_base 77dd6e1
  .venv/bin/python bench/bench_cam_overlap.py --threads 2
  .venv/bin/python bench/bench_cam_overlap.py --code /tmp/traitlens_base/workflow_scripts

Prints one line: maps, seconds, ms per map (in process, after the imports); ``--table``
writes the table, to check that two codes give the same one.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH, MAP, TRAITS, SHARDS = 360, 640, 14, 5, 4


def cam_like_maps(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, TRAITS, MAP, MAP) float32: a blob near the face's cells, sometimes a second one
    elsewhere, cell noise; about a fifth of the cells negative."""
    yy, xx = np.mgrid[0:MAP, 0:MAP].astype(np.float32)
    shape = (n, TRAITS, 1, 1)
    cy, cx = rng.normal(6.5, 1.5, shape), rng.normal(7.0, 1.5, shape)
    width = rng.uniform(1.5, 3.5, shape)
    maps = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
    second = rng.random(shape) < 0.4
    oy, ox = rng.uniform(0, MAP, shape), rng.uniform(0, MAP, shape)
    maps += second * 0.6 * np.exp(-((yy - oy) ** 2 + (xx - ox) ** 2) / 4.0)
    maps += 0.08 * rng.standard_normal((n, TRAITS, MAP, MAP)) - 0.1
    return maps.astype(np.float32)


def write_files(folder: Path, n_frames: int) -> tuple[list[str], list[str], list[str]]:
    """The two CAM files and the shards' frames and faces files, written once."""
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    from traitlens.interpret.cam_file import write_cam_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per_shard = -(-n_frames // SHARDS)
    frames, faces = [], []
    for s in range(SHARDS):
        for sub in ("frames", "faces"):
            path = folder / sub / f"s{s:03d}.h5"
            path.parent.mkdir(exist_ok=True)
            with h5py.File(path, "w") as f:
                if sub == "frames":  # only the shape is read: an empty chunked dataset
                    f.create_dataset("frames", (per_shard, HEIGHT, WIDTH, 3), np.uint8,
                                     chunks=(1, HEIGHT, WIDTH, 3))  # fmt: skip
                else:  # face boxes about the middle of the frame, a tenth not found
                    centre = rng.normal([320, 170], [30, 20], (per_shard, 2))
                    half = rng.uniform(60, 110, (per_shard, 1))
                    box = np.concatenate([centre - half, centre + half], axis=1)
                    box[rng.random(per_shard) < 0.1] = np.nan
                    f.create_dataset("box", data=box.astype(np.float32))
            (frames if sub == "frames" else faces).append(str(path))

    class Index:
        video_id = [f"v{i // 10:05d}" for i in range(n_frames)]
        frame_index = np.arange(n_frames) % 10
        file = np.arange(n_frames) % SHARDS
        row = np.arange(n_frames) // SHARDS
        paths = frames

    cams = []
    for source in ("img", "img_gradcam"):
        path = folder / "cam" / f"{source}.h5"
        path.parent.mkdir(exist_ok=True)
        traits = ["openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism"]
        write_cam_file(path, source, "cam", "conv5_3", "img", 224, "test", Index,
                       cam_like_maps(rng, n_frames), np.zeros((n_frames, TRAITS)),
                       traits=traits)  # fmt: skip
        cams.append(str(path))
    return cams, frames, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--code", type=Path, default=REPO / "workflow_scripts")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/traitlens_bench_cam"))
    parser.add_argument("--table", type=Path, help="write the table here (to compare codes)")
    parser.add_argument(
        "--results", type=Path, help="a run's results/<name> folder: time its own CAM files instead"
    )
    parser.add_argument("--repeat", type=int, default=10, help="with --results")  # fmt: skip
    args = parser.parse_args()
    if args.results:  # a run's own files: its CAM files given --repeat times over
        folder = args.results
        cams = [str(folder / "cam" / f"{s}.h5") for s in ("img", "img_gradcam")] * args.repeat
    else:
        folder = args.workdir / f"frames{args.frames}"
        if not (folder / "cam" / "img_gradcam.h5").exists():
            write_files(folder, args.frames)
        cams = sorted(str(p) for p in (folder / "cam").glob("*.h5"))
    sys.path.insert(0, str(args.code.resolve()))
    from traitlens.interpret.cam_face_overlap import face_overlap_table

    frames = sorted(str(p) for p in (folder / "frames").glob("*.h5"))
    faces = sorted(str(p) for p in (folder / "faces").glob("s*.h5"))
    options = {}
    if "threads" in inspect.signature(face_overlap_table).parameters:
        options["threads"] = args.threads
    elif args.threads != 1:
        sys.exit(f"{args.code}: face_overlap_table takes no threads")
    start = time.perf_counter()
    table = face_overlap_table(cams, faces, frames, 0.2, **options)
    seconds = time.perf_counter() - start
    if args.table:
        table.to_csv(args.table, sep="\t", index=False, float_format="%.6f")
    print(f"{len(table)} maps, {seconds:.2f} s, {1000 * seconds / len(table):.2f} ms per map, "
          f"threads {args.threads}, scored {table['overlap'].notna().mean():.2f}, "
          f"median overlap {table['overlap'].median():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
