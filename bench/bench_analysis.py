"""Benchmark: the interpretability analysis of one layer's activation dump at full scale.

Goal (issue 5, part 9): the analysis of 100,000 frames x 512 units takes < 60 s. Writes,
untimed, a synthetic activation dump in the shared layout (``SPEC5.md``: keys, the
``max`` / ``mean`` / ``argmax`` reductions lzf-compressed in 512-row chunks as
``DumpWriter`` writes them, top-K maps with K = 50 at 14 x 14, each unit's top maps a
blob at its own place on the face) plus a face template and a 1,000-row faces shard
(the dump's rows point into it, for the montages), then times, each phase in a fresh
child process so that its peak RSS is its own:

  detectors   what ``find_detectors`` does from the dump for one layer, stage by stage:
              the attrs, the keys, the ``max`` reduction, the top-K arrays, the region
              histograms over the top ``n_top`` (50) frames, region scores + verdicts
              + the table rows
  find_det.   the whole ``traitlens.interpret.detectors.find_detectors`` call on that dump (no
              maps stored, so no IoU): tables, the layer's histogram figure and the
              four region montages with their faces
  au          the AU emergence core on the same size: the ``max`` reduction read, then
              ``traitlens.interpret.emergence_stats.emergence(au, units_max, n=100)`` for 17 AUs
              (and, for reference, one ``top_n_mask`` of the units alone)
  iou         Network Dissection on a smaller dump that stores its maps (``--iou-frames``,
              1,000 by default; full maps of 100k x 512 x 14 x 14 are ~20 GB of float16 and
              not part of the goal): the quantile pass and the IoU pass (56 x 56), each
              reported in frames/s

The files are freshly written, so reads come from the page cache: this measures the
CPU work, not a disk.

Command (repository root), ~3 minutes on the project's 2-core VM:
  OMP_NUM_THREADS=1 .venv/bin/python bench/bench_analysis.py

Output: a markdown table on stdout and a JSON object (seconds and peak RSS per phase and
stage, the sizes, machine) written to bench/results/bench_analysis.json (``--json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from machine import cpu_name  # noqa: E402

REGIONS = ["eyebrows", "eyes", "nose", "mouth"]
FACE_SIZE = 112
FACE_ROWS = 1000  # rows of the faces shard; dump row i points at row i % FACE_ROWS
AUS = 17


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --- synthetic inputs (not timed) ----------------------------------------------------------


def template_masks(size: int = FACE_SIZE) -> np.ndarray:
    s = size / 112
    masks = np.zeros((4, size, size), bool)
    for r, (y0, y1, x0, x1) in enumerate([(30, 40, 20, 92), (40, 54, 20, 92),
                                          (54, 74, 44, 68), (78, 94, 34, 78)]):  # fmt: skip
        masks[r, int(y0 * s) : int(y1 * s), int(x0 * s) : int(x1 * s)] = True
    return masks


def write_template(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["region_names"] = REGIONS
        f["masks"] = template_masks()
        f["mean_face"] = np.full((FACE_SIZE, FACE_SIZE, 3), 120, np.uint8)
        f["mean_landmarks"] = np.zeros((478, 2), np.float32)


def write_faces(path: Path, rng) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "aligned",
            data=rng.integers(0, 256, (FACE_ROWS, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8),
            chunks=(1, FACE_SIZE, FACE_SIZE, 3),
        )
        f["success"] = np.ones(FACE_ROWS, bool)


def blob_maps(rng, n_units: int, k: int, h: int, w: int) -> np.ndarray:
    """float32 (U, K, h, w): per unit a Gaussian blob at its own place, jittered per frame,
    on a noise floor; strengths descending along K like a top-K list."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy = rng.uniform(1, h - 2, (n_units, 1)) + rng.normal(0, 0.5, (n_units, k))
    cx = rng.uniform(1, w - 2, (n_units, 1)) + rng.normal(0, 0.5, (n_units, k))
    sigma = rng.uniform(0.7, 2.5, (n_units, 1))
    d2 = (yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2
    strength = np.sort(rng.gamma(3.0, 2.0, (n_units, k)), axis=1)[:, ::-1]
    maps = strength[..., None, None] * np.exp(-d2 / (2 * sigma[..., None, None] ** 2))
    return (maps + rng.uniform(0, 0.3, maps.shape)).astype(np.float32)


def write_dump(path: Path, n: int, units: int, k: int, h: int, w: int, maps: bool, seed: int):
    """A dump in the spec's layout; with ``maps`` the full maps too (then top-K and the
    reductions are computed from them)."""
    rng = np.random.default_rng(seed)
    text = h5py.string_dtype()
    rows_chunk = max(1, min(n, 4096, 2**20 // (4 * units)))  # as DumpWriter chunks them
    with h5py.File(path, "w") as f:
        f.attrs.update(
            model="face", layer="conv5_3", kind="face", input_size=224, n_frames=n,
            n_units=units, map_height=h, map_width=w, top_k=k, stores_maps=maps,
            created_by="bench_analysis (synthetic)", schema="synthetic dump, SPEC5 layout",
        )  # fmt: skip
        f.create_dataset(
            "video_id", data=np.array([f"vid{i // 10:06d}" for i in range(n)], object), dtype=text
        )
        f["frame_index"] = (np.arange(n) % 10).astype(np.int32)
        f.create_dataset("split", data=np.array(["train"] * n, object), dtype=text)
        f.create_dataset("shard_file", data=np.array(["s000.h5"] * n, object), dtype=text)
        f["row"] = (np.arange(n) % FACE_ROWS).astype(np.int64)
        red = {
            name: f.create_dataset(
                name, (n, units), dtype=dt, chunks=(rows_chunk, units), compression="lzf"
            )
            for name, dt in (("max", np.float32), ("mean", np.float32), ("argmax", np.int32))
        }
        if maps:
            maps_rows = max(1, min(n, 64, 2**20 // (units * h * w * 2)))  # as DumpWriter
            ds = f.create_dataset(
                "maps", (n, units, h, w), np.float16, chunks=(maps_rows, units, h, w)
            )
            mx_all = np.empty((n, units), np.float32)
            step = 64
            for s in range(0, n, step):
                m = blob_maps(rng, units, min(step, n - s), h, w).transpose(1, 0, 2, 3)
                ds[s : s + len(m)] = m.astype(np.float16)
                flat = m.reshape(len(m), units, -1)
                mx_all[s : s + len(m)] = flat.max(axis=2)
                red["mean"][s : s + len(m)] = flat.mean(axis=2)
                red["argmax"][s : s + len(m)] = flat.argmax(axis=2)
            red["max"][:] = mx_all
            top = np.argsort(-mx_all, axis=0, kind="stable")[:k].T  # (U, K)
            f["top_index"] = top.astype(np.int64)
            f["top_value"] = np.take_along_axis(mx_all.T, top, axis=1)
            f["top_maps"] = ds[:][top, np.arange(units)[:, None]]  # small: read whole
            return
        for s in range(0, n, 8192):
            b = min(8192, n - s)
            mx = rng.gamma(2.0, 1.0, (b, units)).astype(np.float32)
            red["max"][s : s + b] = mx
            red["mean"][s : s + b] = mx * rng.uniform(0.05, 0.3, (b, units)).astype(np.float32)
            red["argmax"][s : s + b] = rng.integers(0, h * w, (b, units), dtype=np.int32)
        top_maps = blob_maps(rng, units, k, h, w)
        f["top_index"] = np.stack([rng.choice(n, k, replace=False) for _ in range(units)])
        f["top_value"] = top_maps.reshape(units, k, -1).max(axis=2)
        f["top_maps"] = top_maps.astype(np.float16)


def write_inputs(tmp: Path, args) -> None:
    rng = np.random.default_rng(args.seed)
    write_template(tmp / "template.h5")
    write_faces(tmp / "s000.h5", rng)
    write_dump(tmp / "conv5_3.h5", args.frames, args.units, args.top_k, 14, 14, False, 1)
    if args.iou_frames:
        write_dump(tmp / "maps.h5", args.iou_frames, args.units, args.top_k, 14, 14, True, 2)


# --- timed phases (each in a child process) ------------------------------------------------


class Clock:
    def __init__(self):
        self.stages: dict[str, float] = {}
        self._t = time.perf_counter()
        self.import_rss_mb = 0.0

    def imports(self) -> None:
        """Close the imports stage (what the analysis imports before any data is read) and
        note the RSS it left."""
        self.lap("imports (not part of the total)")
        self.import_rss_mb = round(peak_rss_mb())

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(now - self._t, 3)
        self._t = now


def phase_detectors(tmp: Path, args) -> dict:
    clock = Clock()
    from traitlens.faces.face_template import load_template
    from traitlens.interpret import dump_file as ad
    from traitlens.interpret.detectors import (
        detector_table,
        histogram_verdicts,
        region_histograms,
        region_scores,
    )

    dump = tmp / "conv5_3.h5"
    _, _, masks, names = load_template(tmp / "template.h5")
    clock.imports()
    info = ad.dump_info(dump)
    clock.lap("dump_info")
    keys = ad.read_keys(dump)
    clock.lap("read_keys")
    mx = ad.read_reduction(dump, "max")
    unit_max = mx.max(axis=0)
    clock.lap("read max reduction + unit max")
    _, _, top_maps = ad.read_top(dump)
    clock.lap("read_top")
    hist = region_histograms(top_maps, args.n_top, masks.shape[-1], 0.5)
    clock.lap(f"region_histograms (top {args.n_top} of K {top_maps.shape[1]})")
    scores = region_scores(hist, masks)
    histogram_verdicts(scores, 0.5)
    table = detector_table(info["layer"], scores, None, names, 0.5, 0.04)
    clock.lap("region_scores + verdicts + table")
    total = round(sum(v for k, v in clock.stages.items() if not k.startswith("imports")), 3)
    assert len(keys) == args.frames and len(unit_max) == args.units and len(table)
    return {
        "stages_s": clock.stages,
        "total_s": total,
        "rss_after_imports_mb": clock.import_rss_mb,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def phase_find_detectors(tmp: Path, args) -> dict:
    clock = Clock()
    from traitlens.interpret import dump_file  # noqa: F401 (imported by find_detectors)
    from traitlens.interpret.detectors import find_detectors

    clock.imports()
    out = tmp / "out"
    t0 = time.perf_counter()
    find_detectors(
        [tmp / "conv5_3.h5"], tmp / "template.h5", [tmp / "s000.h5"], ["conv5_3"],
        {"n_top": args.n_top, "min_score": 0.5, "iou_quantile": 0.005, "min_iou": 0.04,
         "iou_size": 56, "montage_units": 4},
        {"threshold": 0.5, "n_images": 8, "units": 8, "receptive_field": {"conv5_3": 0.29}},
        out / "detectors.tsv", out / "detector_counts.tsv", [out / "hist.png"],
        [out / f"detectors_{r}.png" for r in REGIONS], progress=False,
    )  # fmt: skip
    return {
        "stages_s": clock.stages,
        "total_s": round(time.perf_counter() - t0, 3),
        "rss_after_imports_mb": clock.import_rss_mb,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def phase_au(tmp: Path, args) -> dict:
    clock = Clock()
    from traitlens.interpret import dump_file as ad
    from traitlens.interpret.au_emergence import emergence_table
    from traitlens.interpret.emergence_stats import emergence, top_n_mask

    clock.imports()
    units_max = ad.read_reduction(tmp / "conv5_3.h5", "max")
    clock.lap("read max reduction")
    rng = np.random.default_rng(args.seed)
    au = rng.gamma(1.5, 1.0, (len(units_max), AUS))
    au[:, :3] += units_max[:, :3]  # three AUs that some unit follows
    clock.lap("synthetic AU values (not part of the total)")
    top_n_mask(units_max, args.au_n)
    clock.lap("one top_n_mask of the units (reference)")
    found = [emergence(au[:, a], units_max, n=args.au_n) for a in range(AUS)]
    clock.lap(f"emergence x {AUS} AUs")
    labels = [("conv5_3", u) for u in range(units_max.shape[1])]
    names = [f"AU{a:02d}" for a in range(AUS)]
    table = emergence_table(au, units_max, labels, names, args.au_n, seed=0)
    clock.lap(f"emergence_table, {AUS} AUs (the rule's path: unit masks once)")
    s = clock.stages
    per_au = s[f"emergence x {AUS} AUs"] / AUS
    total = s["read max reduction"] + s[f"emergence x {AUS} AUs"]
    table_s = s[f"emergence_table, {AUS} AUs (the rule's path: unit masks once)"]
    assert table["unit"].tolist()[:3] == [r.unit for r in found[:3]]
    return {
        "stages_s": s,
        "total_s": round(total, 3),
        "total_table_s": round(s["read max reduction"] + table_s, 3),
        "per_au_s": round(per_au, 3),
        "planted_found": [r.unit for r in found[:3]],
        "rss_after_imports_mb": clock.import_rss_mb,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def phase_iou(tmp: Path, args) -> dict:
    clock = Clock()
    from traitlens.faces.face_template import load_template
    from traitlens.interpret import dump_file as ad
    from traitlens.interpret.netdissect import (
        _chunk_frames,
        netdissect_iou,
        unit_quantile_thresholds,
    )

    dump = tmp / "maps.h5"
    _, _, masks, _ = load_template(tmp / "template.h5")
    n = args.iou_frames
    chunk = _chunk_frames(args.units, 14, 14)
    clock.imports()
    unit_max = ad.read_reduction(dump, "max").max(axis=0)
    t = unit_quantile_thresholds(ad.iter_maps(dump, chunk), args.units, 0.005, unit_max)
    clock.lap("quantile pass")
    iou = netdissect_iou(ad.iter_maps(dump, chunk), t, masks, 56)
    clock.lap("IoU pass (56 x 56)")
    s = clock.stages
    return {
        "stages_s": s,
        "frames": n,
        "quantile_frames_per_s": round(n / s["quantile pass"], 1),
        "iou_frames_per_s": round(n / s["IoU pass (56 x 56)"], 1),
        "both_passes_frames_per_s": round(n / (s["quantile pass"] + s["IoU pass (56 x 56)"]), 1),
        "max_iou": round(float(iou.max()), 4),
        "rss_after_imports_mb": clock.import_rss_mb,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def _child(fn, tmp, args, queue):
    try:
        queue.put(fn(tmp, args))
    except BaseException as err:  # noqa: BLE001 (reported by the parent)
        queue.put({"error": repr(err)})
        raise


def in_child(fn, tmp: Path, args) -> dict:
    ctx = mp.get_context("fork")  # the parent holds no big arrays: a fresh RSS per phase
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, tmp, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        sys.exit(f"bench_analysis.py: {fn.__name__} failed: {result['error']}")
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--units", type=int, default=512)
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--n-top", type=int, default=50)
    ap.add_argument("--au-n", type=int, default=100)
    ap.add_argument("--iou-frames", type=int, default=1000, help="0 skips the IoU phase")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--json", default=str(REPO / "bench" / "results" / "bench_analysis.json"))
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bench_analysis_") as name:
        tmp = Path(name)
        t0 = time.perf_counter()
        in_child(lambda t, a: write_inputs(t, a) or {}, tmp, args)
        write_s = time.perf_counter() - t0
        dump_mb = (tmp / "conv5_3.h5").stat().st_size / 1e6
        print(f"inputs written in {write_s:.1f} s (dump {dump_mb:.0f} MB)", file=sys.stderr)
        phases = {"detectors": in_child(phase_detectors, tmp, args)}
        phases["find_detectors"] = in_child(phase_find_detectors, tmp, args)
        phases["au_emergence"] = in_child(phase_au, tmp, args)
        if args.iou_frames:
            phases["netdissect_iou"] = in_child(phase_iou, tmp, args)
    goal = phases["detectors"]["total_s"] + phases["au_emergence"]["total_s"]
    goal_table = phases["detectors"]["total_s"] + phases["au_emergence"]["total_table_s"]
    result = {
        "machine": cpu_name(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "frames": args.frames,
        "units": args.units,
        "top_k": args.top_k,
        "n_top": args.n_top,
        "map": [14, 14],
        "dump_mb": round(dump_mb, 1),
        "phases": phases,
        "detectors_plus_au_s": round(goal, 3),
        "detectors_plus_au_table_s": round(goal_table, 3),
        "goal_s": 60,
    }
    print("| phase | stage | seconds | peak RSS MB (after imports) |\n|---|---|---|---|")
    for phase, r in phases.items():
        for stage, s in r.get("stages_s", {}).items():
            print(f"| {phase} | {stage} | {s:.3f} | |")
        total = r.get("total_s")
        print(f"| {phase} | **total** | **{total if total is not None else '-'}** "
              f"| {r['peak_rss_mb']} ({r['rss_after_imports_mb']}) |")  # fmt: skip
    if "netdissect_iou" in phases:
        r = phases["netdissect_iou"]
        print(f"\nIoU on {r['frames']} frames: quantile pass {r['quantile_frames_per_s']} "
              f"frames/s, IoU pass {r['iou_frames_per_s']} frames/s")  # fmt: skip
    print(
        f"\ndetectors + AU emergence: {goal:.1f} s with emergence() x {AUS}, "
        f"{goal_table:.1f} s with emergence_table (goal < 60 s)"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
