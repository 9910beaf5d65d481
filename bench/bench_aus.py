"""Benchmark: frames/s of the mesh AU backend on one core.

Times ``MeshAuSolver.estimate`` (alignment + residual + one matrix product + the
bounded solve) on N landmark sets per call, one BLAS thread, best of R repeats, and
its two halves separately; the solver's one-off set-up is timed apart. Landmarks:

  synthetic  py-feat's model forward (random AU vectors, a random similarity into image
             axes, 0.3-unit landmark noise): no mediapipe, any N
  faces      the mediapipe landmarks of ``--faces`` (e.g. results/demo/faces/*.h5),
             tiled to N rows

With ``--faces`` it also times one shard end to end as the estimate_aus rule runs it
(read faces/<shard>.h5, estimate, per-video means, write both TSVs).

Run from the repository root:
  .venv/bin/python bench/bench_aus.py [--frames 20000] [--repeats 5] \
      [--faces 'results/demo/faces/s*.h5']
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before numpy starts its thread pool

import argparse  # noqa: E402
import glob  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts"))

from traitlens.aus.au_mesh_model import load_model  # noqa: E402
from traitlens.aus.box_qp import solve_box_qp  # noqa: E402
from traitlens.aus.estimate_aus import AuConfig, estimate_shard, write_tsv  # noqa: E402
from traitlens.aus.mesh_backend import MeshAuSolver  # noqa: E402
from traitlens.faces.faces_file import read_faces  # noqa: E402


def synthetic_landmarks(n: int, seed: int = 0) -> np.ndarray:
    model = load_model()
    rng = np.random.default_rng(seed)
    au = rng.uniform(0, 1, (n, 20)) * (rng.uniform(size=(n, 20)) < 0.25)  # a few AUs on
    mesh = model.mesh(au)
    ang = rng.uniform(-0.3, 0.3, n)
    rot = np.stack(
        [np.stack([np.cos(ang), -np.sin(ang)], -1), np.stack([np.sin(ang), np.cos(ang)], -1)], -2
    )
    scale = rng.uniform(0.5, 2.0, n)
    img = mesh.copy()
    img[..., 1:] *= -1.0
    img[..., :2] = scale[:, None, None] * np.einsum("nij,nvj->nvi", rot, img[..., :2]) + 300.0
    img[..., 2] *= scale[:, None]
    img += rng.normal(0, 0.3, img.shape) * scale[:, None, None]
    return img.astype(np.float32)


def faces_landmarks(pattern: str, n: int) -> np.ndarray:
    paths = sorted(glob.glob(pattern))
    if not paths:
        sys.exit(f"no faces file matches {pattern!r}")
    rows = [read_faces(p) for p in paths]
    lm = np.concatenate([r.landmarks[r.success] for r in rows])
    return np.resize(lm, (n, *lm.shape[1:]))


def best_of(repeats: int, fn, *args) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_solver(name: str, lm: np.ndarray, repeats: int) -> list[str]:
    solver = MeshAuSolver()
    n = len(lm)
    total = best_of(repeats, solver.estimate, lm)
    align = best_of(repeats, solver.residuals, lm)
    g = solver.residuals(lm) @ solver._bw - solver._l1
    qp = best_of(repeats, solve_box_qp, solver._h, g, solver._lo, solver._hi)
    return [
        f"| {name} | {n} | {total:.3f} | **{n / total:,.0f}** | {n / align:,.0f} | {n / qp:,.0f} |"
    ]


def bench_shard(pattern: str, repeats: int) -> list[str]:
    lines = []
    cfg = AuConfig()
    for path in sorted(glob.glob(pattern)):
        with tempfile.TemporaryDirectory() as tmp:

            def run(path=path, tmp=tmp):
                frames, videos = estimate_shard(path, cfg)
                write_tsv(frames, Path(tmp) / "s.tsv")
                write_tsv(videos, Path(tmp) / "s.videos.tsv")
                return len(frames)

            n = run()
            seconds = best_of(repeats, run)
        lines.append(f"| {Path(path).name} | {n} | {seconds:.3f} | {n / seconds:,.0f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--faces", help="glob of faces/<shard>.h5 files (mediapipe landmarks)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    MeshAuSolver()  # once per process: read the npz, build and factor the normal equations
    setup = time.perf_counter() - t0
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"numpy {np.__version__}; 1 BLAS thread; load average {os.getloadavg()[0]:.2f}; "
        f"solver set-up (once per process) {setup:.2f} s"
    )
    print(
        "\n| landmarks | frames | seconds | frames/s | align+residual only, frames/s | "
        "bounded solve only, frames/s |"
    )
    print("|---|---|---|---|---|---|")
    for line in bench_solver(
        "synthetic (model forward)", synthetic_landmarks(args.frames), args.repeats
    ):
        print(line)
    if args.faces:
        for line in bench_solver(
            "mediapipe (demo faces, tiled)", faces_landmarks(args.faces, args.frames), args.repeats
        ):
            print(line)
        print("\n| shard (estimate_shard + both TSVs) | frames | seconds | frames/s |")
        print("|---|---|---|---|")
        for line in bench_shard(args.faces, args.repeats):
            print(line)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
