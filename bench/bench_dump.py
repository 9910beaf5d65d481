"""Benchmark: activation dump time and memory against the forward pass alone.

Writes synthetic shard files into a temporary folder (``faces/<shard>.h5``-like files:
``aligned`` (n, S, S, 3) smooth-noise crops, ``success`` all true, ``video_index``,
``frame_index``, ``video_id``; or ``frames/<shard>.h5``-like ones with ``--kind img``) at
each ``--frames`` size, a labels table and a trained-model file (a seeded DAN+ saved with
``visual_model.save_weights``), then runs, each in its own Python process:

  forward        the same loader as the dump (``visual_model.model_batches``: HDF5 reads, the
                 uint8 resize, ``sequential_plan`` batches) and ``model.activations(x,
                 layers)`` for the dumped layers, the activations discarded
  dump, maps     ``activation_dump.dump_activations`` of the layers with store_maps on
  dump, no maps  the same with store_maps off (reductions and top-K only)

Each process loads the model from the weights file (``load_trained``, as the rule does),
builds the index, runs one untimed warm-up forward, then times its pass over every frame
(the dump's writer set-up, HDF5 writes and the final rename included). "x forward" is the
median over repeats of (case seconds / forward seconds of the same size and repeat); the
cases of a repeat run in a rotated order. Peak RSS is the process's VmHWM (its own peak,
so sizes and cases do not share one); "RSS before" is its VmRSS just before the timed pass
(Python, torch, the model, the index), so the difference is what the pass itself added.
The files are freshly written, so reads come from the page cache. The measured processes
run with OMP_WAIT_POLICY=PASSIVE (``--omp-wait-policy``): when other jobs hold a core,
libgomp's spinning threads made a 2-thread pass 5-8x slower at random (CPU seconds up
alike) on the shared 2-core VM, forward and dump alike; passive waiting kept repeats
within ~20%.

Presets (run from the repository root):

  (a) CPU (the demo's face model: VGG16 widths / 8, batch norm, 64x64 from 112x112 crops,
      2 torch threads), 2,000 and 8,000 frames, layers conv4_3 conv5_1 conv5_2 conv5_3:
  .venv/bin/python bench/bench_dump.py --frames 2000 8000 --repeats 2 --threads 2

  (b) GPU (``--gpu``: the paper's VGG16, no batch norm, 224x224, bf16 autocast,
      channels_last, 4 loader workers, 8 torch threads), on a lent GPU machine with its
      own python3 (torch, h5py, pandas, tqdm); without CUDA it runs the same settings on
      the CPU (a smoke test: use few frames):
  python3 bench/bench_dump.py --gpu --frames 4000 16000 --repeats 2 \\
      --json $OUT/bench_dump_gpu.json

Output: progress on stderr; a markdown table, then one JSON line (machine, settings, per
case and size: seconds per repeat, frames/s, x forward, peak RSS, dump sizes, peak GPU
memory on CUDA) on stdout; ``--json PATH`` also writes it to a file (default
``bench/results/bench_dump_<device>.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py

from machine import cpu_name  # noqa: E402

CASES = ("forward", "dump, maps", "dump, no maps")
FRAMES_PER_VIDEO = 10
# the demo's face model (config.yaml models.visual + models.face)
DEMO_FACE = {"width_divisor": 8, "batch_norm": True, "input_size": 64, "input_scale": 0.015625}
GPU_MODEL = {"width_divisor": 1, "batch_norm": False, "input_size": 224, "input_scale": 1.0}


def proc_status(field: str) -> int:
    """A /proc/self/status memory field in bytes (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# --- synthetic data (parent) ---------------------------------------------------------------


def smooth_images(n: int, height: int, width: int, seed: int):
    """uint8 (n, H, W, 3): upsampled coarse noise plus fine grain (image-like pixels)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, height // 16), max(2, width // 16), generator=g)
    img = F.interpolate(coarse * 255.0, size=(height, width), mode="bilinear")
    img += torch.randn(n, 3, height, width, generator=g) * 6.0
    return img.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def write_shards(folder: Path, kind: str, n_frames: int, hw: tuple[int, int], shards: int):
    """Shard files of ``kind`` (face: aligned crops, img: frames) and their labels table."""
    import h5py
    import numpy as np
    import pandas as pd

    from traitlens.ingest.labels import BIG_FIVE

    dataset = {"face": "aligned", "img": "frames"}[kind]
    h, w = hw
    n_videos = math.ceil(n_frames / FRAMES_PER_VIDEO)
    per_shard = math.ceil(n_videos / shards)
    pool = smooth_images(min(64, n_frames), h, w, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    paths, ids, done = [], [], 0
    for s in range(shards):
        videos = [f"v{v:05d}" for v in range(s * per_shard, min(n_videos, (s + 1) * per_shard))]
        if not videos:
            break
        n = min(len(videos) * FRAMES_PER_VIDEO, n_frames - done)
        path = folder / f"s{s:03d}.h5"
        with h5py.File(path, "w") as f:
            ds = f.create_dataset(dataset, (n, h, w, 3), np.uint8, chunks=(1, h, w, 3))
            for start in range(0, n, 256):  # pool frames shifted sideways: distinct, cheap
                k = np.arange(done + start, done + min(n, start + 256))
                block = pool[k % len(pool)]
                for j, shift in enumerate(7 * (k // len(pool))):
                    block[j] = np.roll(block[j], int(shift), axis=1)
                ds[start : start + len(k)] = block
            video_index = np.arange(n, dtype=np.int32) // FRAMES_PER_VIDEO
            f.create_dataset("video_index", data=video_index)
            f.create_dataset("frame_index", data=np.arange(n, dtype=np.int32) % 10 * 45)
            f.create_dataset(
                "video_id", data=np.array(videos, dtype=object), dtype=h5py.string_dtype()
            )
            if kind == "face":
                f.create_dataset("success", data=np.ones(n, bool))
        done += n
        paths.append(str(path))
        ids += videos
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"video_id": ids, "split": "test"})
    for trait in BIG_FIVE:
        labels[trait] = rng.uniform(0.2, 0.8, len(ids))
    return paths, labels


def save_model(path: Path, kind: str, model_cfg: dict) -> None:
    import torch

    from traitlens.models.dan import DanConfig, DanPlus
    from traitlens.models.visual_model import save_weights

    torch.manual_seed(0)
    model = DanPlus(DanConfig(**model_cfg)).eval()
    save_weights(model, kind, path)


# --- one measurement (child process) ---------------------------------------------------------


def child(spec: dict) -> dict:
    """Run one case over one data set; the result as a dict (printed as JSON)."""
    import pandas as pd
    import torch

    from traitlens.interpret.activation_dump import dump_activations
    from traitlens.models.train import resolve_device
    from traitlens.models.train_data import build_index, sequential_plan
    from traitlens.models.visual_model import RunConfig, load_trained, model_batches, on_device

    torch.set_num_threads(spec["threads"])
    run = RunConfig(
        device=spec["device"],
        amp=spec["amp"],
        num_workers=spec["num_workers"],
        threads=spec["threads"],
    )
    device = resolve_device(run.device)
    model, kind = load_trained(spec["weights"])
    model = on_device(model, device).eval()
    labels = pd.read_csv(spec["labels"], sep="\t", dtype={"video_id": str})
    index = build_index(kind, spec["shards"], labels)
    layers = spec["layers"]
    size = model.cfg.input_size
    use_amp = bool(run.amp and device.type == "cuda")

    def forward(x):
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=use_amp):
            return model.activations(x, layers)

    warm = torch.zeros(min(spec["batch"], len(index)), 3, size, size, device=device)
    warm = warm.contiguous(memory_format=torch.channels_last)
    forward(warm)
    del warm
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = proc_status("VmRSS")
    cpu0 = os.times()
    t0 = time.perf_counter()
    out_dir = Path(spec["out"])
    sizes = {}
    if spec["case"] == "forward":
        plan = sequential_plan(len(index), spec["batch"])
        for x, _, _ in model_batches(kind, index, plan, size, device, run):
            forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    else:
        paths = {layer: out_dir / f"{layer}.h5" for layer in layers}
        dump_activations(
            model,
            kind,
            index,
            layers,
            paths,
            "face",
            spec["top_k"],
            spec["case"] == "dump, maps",
            spec["batch"],
            run,
        )
        sizes = {layer: p.stat().st_size for layer, p in paths.items()}
    seconds = time.perf_counter() - t0
    cpu1 = os.times()
    for p in sizes:
        (out_dir / f"{p}.h5").unlink()
    result = {
        "seconds": seconds,
        "cpu_seconds": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "frames": len(index),
        "rss_before_mb": rss_before / 2**20,
        "peak_rss_mb": proc_status("VmHWM") / 2**20,
        "dump_mb": sum(sizes.values()) / 1e6,
        "dump_mb_per_layer": {k: round(v / 1e6, 2) for k, v in sizes.items()},
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def run_child(spec: dict, threads: int, wait_policy: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if wait_policy != "default":
        env["OMP_WAIT_POLICY"] = wait_policy.upper()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"bench_dump.py: case {spec['case']!r} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- main --------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--gpu", action="store_true", help="preset (b): VGG16 at 224, bf16, CUDA")
    ap.add_argument("--kind", choices=("face", "img"), default="face")
    ap.add_argument("--image-size", help="stored crop/frame size HxW (face 112x112, img 216x384)")
    ap.add_argument("--frames", type=int, nargs="+", default=[2000, 8000])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--layers", nargs="+", default=["conv4_3", "conv5_1", "conv5_2", "conv5_3"])
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch threads (default 2; --gpu 8)")
    ap.add_argument("--num-workers", type=int, help="loader processes (default 0; --gpu 4)")
    ap.add_argument("--width-divisor", type=int)
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument(
        "--omp-wait-policy",
        choices=("passive", "active", "default"),
        default="passive",
        help="OMP_WAIT_POLICY of the measured processes (see the module docstring)",
    )
    ap.add_argument("--tmpdir", help="where the shard files go (default: the system's)")
    ap.add_argument("--json", help="result file (default bench/results/bench_dump_<device>.json)")
    args = ap.parse_args(argv)
    if args.child:
        return args
    import torch

    model = dict(GPU_MODEL if args.gpu else DEMO_FACE)
    for key in ("width_divisor", "input_size", "batch_norm"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    args.model = model
    args.device, args.amp = "cpu", False
    if args.gpu:
        if torch.cuda.is_available():
            args.device, args.amp = "cuda", True
        else:
            print(
                "--gpu: PyTorch sees no CUDA device; running its settings on the CPU",
                file=sys.stderr,
            )
    if args.threads is None:
        args.threads = 8 if args.gpu else 2
    if args.num_workers is None:
        args.num_workers = 4 if args.gpu else 0
    size = args.image_size or ("112x112" if args.kind == "face" else "216x384")
    try:
        args.hw = tuple(int(v) for v in size.lower().split("x"))
    except ValueError:
        ap.error(f"--image-size {size!r}: expected HxW")
    return args


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return cpu_name()


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return {}
    import torch

    load_before = os.getloadavg()[0]
    runs: dict[int, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bench_dump_") as tmp:
        tmp = Path(tmp)
        weights = tmp / "weights.pt"
        save_model(weights, args.kind, args.model)
        for n in args.frames:
            t0 = time.perf_counter()
            shards, labels = write_shards(tmp / f"n{n}", args.kind, n, args.hw, args.shards)
            labels.to_csv(tmp / f"n{n}" / "labels.tsv", sep="\t", index=False)
            mb = sum(Path(p).stat().st_size for p in shards) / 1e6
            print(
                f"{n} frames {args.hw[0]}x{args.hw[1]} in {len(shards)} shard files "
                f"({mb:.0f} MB), written in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
            runs[n] = {c: [] for c in CASES}
            for r in range(args.repeats):
                order = CASES[r % len(CASES) :] + CASES[: r % len(CASES)]
                for case in order:
                    spec = {
                        "case": case,
                        "weights": str(weights),
                        "labels": str(tmp / f"n{n}" / "labels.tsv"),
                        "shards": shards,
                        "layers": args.layers,
                        "top_k": args.top_k,
                        "batch": args.batch,
                        "device": args.device,
                        "amp": args.amp,
                        "num_workers": args.num_workers,
                        "threads": args.threads,
                        "out": str(tmp / f"n{n}"),
                    }
                    res = run_child(spec, args.threads, args.omp_wait_policy)
                    runs[n][case].append(res)
                    print(
                        f"{n} frames, repeat {r + 1}/{args.repeats}, {case}: "
                        f"{res['seconds']:.2f} s, peak RSS {res['peak_rss_mb']:.0f} MB",
                        file=sys.stderr,
                    )
            for p in shards:  # the next size's files need the space
                Path(p).unlink()

    table = []
    for n, cases in runs.items():
        fwd = [r["seconds"] for r in cases["forward"]]
        for case, rs in cases.items():
            secs = [r["seconds"] for r in rs]
            table.append(
                {
                    "frames": n,
                    "case": case,
                    "seconds": round(statistics.median(secs), 3),
                    "seconds_per_repeat": [round(s, 3) for s in secs],
                    "frames_per_s": round(n / statistics.median(secs), 1),
                    "cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in rs), 2),
                    "x_forward": round(
                        statistics.median(s / f for s, f in zip(secs, fwd, strict=True)), 3
                    ),
                    "x_forward_best": round(min(secs) / min(fwd), 3),
                    "rss_before_mb": round(max(r["rss_before_mb"] for r in rs), 1),
                    "peak_rss_mb": round(max(r["peak_rss_mb"] for r in rs), 1),
                    "dump_mb": round(rs[0]["dump_mb"], 1),
                    **(
                        {"peak_gpu_mb": round(max(r["peak_gpu_mb"] for r in rs), 1)}
                        if "peak_gpu_mb" in rs[0]
                        else {}
                    ),
                }
            )
    result = {
        "device": device_name(args.device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "kind": args.kind,
        "image_size": f"{args.hw[0]}x{args.hw[1]}",
        "model": {**args.model, "amp_bf16": args.amp},
        "layers": args.layers,
        "top_k": args.top_k,
        "batch": args.batch,
        "threads": args.threads,
        "num_workers": args.num_workers,
        "repeats": args.repeats,
        "omp_wait_policy": args.omp_wait_policy,
        "cases": table,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    print(
        f"\nmachine: {result['device']}; torch {result['torch']}; {args.threads} torch "
        f"thread(s), {args.num_workers} loader worker(s); load average "
        f"{result['load_average'][0]} before, {result['load_average'][1]} after"
    )
    gpu = "peak_gpu_mb" in table[0]
    print(
        "\n| frames | case | seconds | frames/s | x forward | x forward (best) | RSS before MB "
        f"| peak RSS MB | dump MB |{' peak GPU MB |' if gpu else ''}"
    )
    print(f"|---|---|---|---|---|---|---|---|---|{'---|' if gpu else ''}")
    for row in table:
        print(
            f"| {row['frames']} | {row['case']} | {row['seconds']:.2f} | {row['frames_per_s']} "
            f"| **{row['x_forward']:.2f}** | {row['x_forward_best']:.2f} "
            f"| {row['rss_before_mb']:.0f} "
            f"| {row['peak_rss_mb']:.0f} | {row['dump_mb']:.1f} |"
            + (f" {row['peak_gpu_mb']:.0f} |" if gpu else "")
        )
    print(json.dumps(result), flush=True)
    out = Path(args.json or REPO / "bench" / "results" / f"bench_dump_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
