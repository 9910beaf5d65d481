"""Benchmark: training images/s with the real shard loader against in-memory tensors.

Writes synthetic frames shard files (smooth noise, uint8, the layout extract_shard
writes: ``frames`` (n, H, W, 3) one frame per chunk, ``video_index``, ``frame_index``,
``timestamp_s``, ``video_id``) into a temporary folder, with a labels table of train-split
videos, then times DAN+ training steps (forward, squared-error loss, backward, optimiser
step, the loss read back each step, as ``train.train_model`` runs them) fed two ways:

  in-memory  every frame preloaded once, already resized to the model input
             (``resize_batch``), as one uint8 tensor on the device; a batch is gathered
             from it, then ``to_model_input`` (float, flips) as in training
  loader     ``visual_model.model_batches``, what ``train_visual`` runs: ``build_index`` ->
             ``batch_loader`` (HDF5 reads and the uint8 resize batch by batch,
             ``num_workers`` processes, pinned memory on CUDA) -> ``to_model_input``;
             with ``--crop-scale`` / ``--crop-aspect`` / ``--jitter`` / ``--color-jitter``
             the plan carries training augmentation (per-sample random resized crops,
             brightness/contrast/colour jitter, done by the loader), the in-memory source
             stays unaugmented

Both use the same model, optimiser, epoch plan (``epoch_plan``: shuffled order, random
flips) and number of steps. Each repeat runs every case once, in a rotated order; a
case's first ``--warmup`` steps (DataLoader workers starting, cuDNN/allocator warm-up)
are not timed, and timing stops at the last step, before the loader's workers shut down.
"x in-memory" is the median over repeats of (case images/s / in-memory images/s of the
same repeat). The files are freshly written, so reads come from the page cache: this
measures the loader's CPU work (HDF5, DataLoader, pinning, copies), not a disk.

``--case-seconds S`` stops a slow case
after S seconds (and >= 3 timed steps) so a device run stays within its time.

Presets (run from the repository root):

  (a) CPU demo (config.yaml's image model: widths / 8, batch norm, 96x96 from 384x216
      frames, Adam, 2 torch threads), loader with 0 and 1 worker processes (~1 min):
  .venv/bin/python bench/bench_train.py --device cpu --width-divisor 8 --batch-norm \
      --input-size 96 --frame-size 216x384 --optimizer adam --batch 32 --steps 10 \
      --warmup 2 --repeats 3 --threads 2 --num-workers 0 1
  the same with training augmentation in the loader (as a config with crop_scale
  [0.6, 1.0], crop_aspect 1.2, jitter 0.2, color_jitter 0.3): add
      --crop-scale 0.6 1.0 --crop-aspect 1.2 --jitter 0.2 --color-jitter 0.3

  (b) GPU (the paper's full VGG16, no batch norm, 224x224 from First Impressions-sized
      360x640 frames, batch 32, SGD, bf16 autocast, channels_last, 4 and 8 workers,
      pinned memory), on a lent GPU machine with its own python3 (torch, h5py, pandas,
      tqdm), one command well under 4 minutes:
  python3 bench/bench_train.py --device cuda --width-divisor 1 --no-batch-norm \
      --input-size 224 --frame-size 360x640 --optimizer sgd --batch 32 --steps 60 \
      --warmup 10 --repeats 2 --threads 4 --num-workers 4 8 --amp \
      --channels-last --case-seconds 30 --json $OUT/bench_train_gpu.json

Output: progress on stderr; a markdown table, then one JSON line (device name, torch
version, images/s per case, ratios, the headline ``images_per_s_in_memory``,
``images_per_s_loader`` and ``ratio_loader_in_memory`` of the best loader
case, peak GPU memory, which includes the preloaded frames) on stdout; ``--json PATH``
also writes that object to a file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py

from machine import cpu_name  # noqa: E402


def _require(names: list[str]) -> dict:
    """Import the modules the benchmark needs; exit with the one that failed, and why."""
    mods = {}
    for name in names:
        try:
            mods[name] = importlib.import_module(name)
        except ImportError as err:
            sys.exit(
                f"bench_train.py: cannot import {name!r} ({err}); it needs numpy, torch, "
                "h5py, pandas and tqdm (for traitlens.models.train) in this python"
            )
    return mods


_mods = _require(
    [
        "numpy",
        "torch",
        "h5py",
        "pandas",
        "tqdm",
        "traitlens.models.dan",
        "traitlens.models.train",
        "traitlens.models.train_data",
        "traitlens.models.visual_model",
    ]
)
np = _mods["numpy"]
torch = _mods["torch"]
h5py = _mods["h5py"]
pd = _mods["pandas"]
F = importlib.import_module("torch.nn.functional")
DanConfig = _mods["traitlens.models.dan"].DanConfig
DanPlus = _mods["traitlens.models.dan"].DanPlus
TrainConfig = _mods["traitlens.models.train"].TrainConfig
make_optimizer = _mods["traitlens.models.train"].make_optimizer
training_step = _mods["traitlens.models.train"].training_step
build_index = _mods["traitlens.models.train_data"].build_index
epoch_plan = _mods["traitlens.models.train_data"].epoch_plan
Augmentation = _mods["traitlens.models.train_data"].Augmentation
to_model_input = _mods["traitlens.models.train_data"].to_model_input
resize_batch = _mods["traitlens.models.train_data"].resize_batch
BIG_FIVE = importlib.import_module("traitlens.ingest.labels").BIG_FIVE
RunConfig = _mods["traitlens.models.visual_model"].RunConfig
loader_batches = _mods["traitlens.models.visual_model"].model_batches

FRAMES_PER_VIDEO = 10  # the workflow's default


# --- synthetic shard files --------------------------------------------------------------


def smooth_frames(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (n, H, W, 3): bilinear-upsampled coarse noise plus a little fine grain, so
    pixels are image-like (smooth regions, edges) rather than white noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(2, height // 24), max(2, width // 24), generator=g)
    img = F.interpolate(coarse * 255.0, size=(height, width), mode="bilinear")
    img += torch.randn(n, 3, height, width, generator=g) * 6.0
    return img.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def write_shards(
    folder: Path, n_videos: int, n_shards: int, height: int, width: int
) -> tuple[list[str], pd.DataFrame]:
    """frames/<shard>.h5-like files (extract_shard's layout) and a train-split labels table."""
    paths, ids = [], []
    per_shard = math.ceil(n_videos / n_shards)
    pool = smooth_frames(min(64, n_videos * FRAMES_PER_VIDEO), height, width, seed=0)
    done = 0
    for s in range(n_shards):
        videos = [f"v{v:05d}" for v in range(s * per_shard, min(n_videos, (s + 1) * per_shard))]
        if not videos:
            break
        path = folder / f"s{s:03d}.h5"
        n = len(videos) * FRAMES_PER_VIDEO
        with h5py.File(path, "w", track_order=False) as f:
            f.attrs.update(
                frames_per_video=FRAMES_PER_VIDEO, frame_width=width, frame_height=height
            )
            frames = f.create_dataset(
                "frames",
                shape=(n, height, width, 3),
                maxshape=(None, height, width, 3),
                chunks=(1, height, width, 3),
                dtype=np.uint8,
                track_times=False,
            )
            for i in range(n):  # pool frames, each shifted sideways: distinct, cheap
                k = done + i
                frames[i] = np.roll(pool[k % len(pool)], 37 * (k // len(pool)), axis=1)
            done += n
            video_index = np.repeat(np.arange(len(videos), dtype=np.int32), FRAMES_PER_VIDEO)
            frame_index = np.tile(np.arange(FRAMES_PER_VIDEO, dtype=np.int32) * 45, len(videos))
            f.create_dataset("video_index", data=video_index, track_times=False)
            f.create_dataset("frame_index", data=frame_index, track_times=False)
            f.create_dataset("timestamp_s", data=frame_index / 30.0, track_times=False)
            f.create_dataset(
                "video_id",
                data=np.array(videos, dtype=object),
                dtype=h5py.string_dtype(),
                track_times=False,
            )
            boxes = np.tile(np.array([[0, 0, width, height]], np.int32), (len(videos), 1))
            f.create_dataset("content_box", data=boxes, track_times=False)
        paths.append(str(path))
        ids += videos
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"video_id": ids, "split": "train"})
    for trait in BIG_FIVE:
        labels[trait] = rng.uniform(0.2, 0.8, len(ids)).astype(np.float32)
    return paths, labels


def preload(index) -> np.ndarray:
    """Every indexed frame, in index order (whole datasets read as slices: fast)."""
    out = None
    for n, path in enumerate(index.paths):
        pick = np.flatnonzero(index.file == n)
        with h5py.File(path, "r") as f:
            data = f["frames"][:]
        if out is None:
            out = np.empty((len(index), *data.shape[1:]), dtype=np.uint8)
        out[pick] = data[index.row[pick]]
    return out


# --- timing -----------------------------------------------------------------------------


def make_step(model, optimizer, device, amp: bool):
    """One training step exactly as train.train_model's inner loop runs it."""
    use_amp = amp and device.type == "cuda"

    def step(x, y) -> float:
        return training_step(model, optimizer, x, y, use_amp)

    return step


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    batches, step, warmup: int, steps: int, batch: int, device, budget_s: float
) -> tuple[float, int]:
    """(images/s, timed steps) over the steps after ``warmup``. Stops before the source is
    exhausted (a DataLoader shuts its workers down then, once an epoch in training), or
    early, after at least 3 timed steps, once the case has run ``budget_s`` seconds."""
    start = time.perf_counter()
    t0, done = None, 0
    for i, (x, y) in zip(range(warmup + steps), batches, strict=False):
        if i == warmup:
            sync(device)
            t0 = time.perf_counter()
        step(x, y)
        if i >= warmup:
            done += 1
            if done >= 3 and budget_s > 0 and time.perf_counter() - start > budget_s:
                break
    sync(device)
    return done * batch / (time.perf_counter() - t0), done


def memory_batches(pixels, labels, plan, size, device):
    """The in-memory source: batches gathered from the preloaded tensor on the device.
    On CPU the gather goes through numpy's (single-threaded) take: torch's CPU
    index_select, 0.2 ms a batch on a quiet machine, took up to ~250 ms when other jobs
    held the cores and its threads waited for each other (on CUDA it is one kernel)."""
    for pos, flips, _crops, _jitter in plan:
        if device.type == "cpu":
            x = torch.from_numpy(pixels.numpy()[pos])
            y = torch.from_numpy(labels.numpy()[pos])
        else:
            idx = torch.from_numpy(pos).to(device, non_blocking=True)
            x, y = pixels.index_select(0, idx), labels.index_select(0, idx)
        yield to_model_input(x, torch.from_numpy(flips), device), y


def loader_source(index, plan, size, device, workers: int, threads: int):
    """The workflow's loader, as train_visual uses it."""
    run = RunConfig(device=device.type, num_workers=workers, threads=threads)
    for x, y, _pos in loader_batches("img", index, plan, size, device, run):
        yield x, y


# --- main -------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--width-divisor", type=int, default=8)
    ap.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--frame-size", default="216x384", help="stored frame size HxW")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per case and repeat")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (main process)")
    ap.add_argument(
        "--num-workers", type=int, nargs="*", default=[0], help="loader cases (0: in process)"
    )
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    ap.add_argument(
        "--crop-scale",
        type=float,
        nargs=2,
        default=(1.0, 1.0),
        metavar=("MIN", "MAX"),
        help="loader: random resized crops (config crop_scale; default off)",
    )
    ap.add_argument("--crop-aspect", type=float, default=1.0, help="config crop_aspect")
    ap.add_argument("--jitter", type=float, default=0.0, help="config jitter (0: off)")
    ap.add_argument("--color-jitter", type=float, default=0.0, help="config color_jitter")
    ap.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="model in channels_last (default: on CUDA only, as train_visual)",
    )
    ap.add_argument("--cudnn-benchmark", action="store_true", help="(train_visual: off)")
    ap.add_argument(
        "--case-seconds",
        type=float,
        default=0,
        help="stop a case early (>= 3 timed steps) after this long; 0: never",
    )
    ap.add_argument("--shards", type=int, default=4, help="synthetic shard files")
    ap.add_argument(
        "--frames",
        type=int,
        default=0,
        help="frames written (default: enough for warmup + steps distinct per case)",
    )
    ap.add_argument("--tmpdir", help="where the shard files go (default: the system's)")
    ap.add_argument("--json", help="also write the result object here")
    args = ap.parse_args(argv)
    try:
        h, w = (int(v) for v in args.frame_size.lower().split("x"))
    except ValueError:
        ap.error(f"--frame-size {args.frame_size!r}: expected HxW, e.g. 216x384")
    args.frame_hw = (h, w)
    if not args.num_workers:
        ap.error("no loader case: give --num-workers")
    if args.channels_last is None:
        args.channels_last = args.device == "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: PyTorch sees no CUDA device here")
    return args


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(max(1, args.threads))
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    h, w = args.frame_hw
    load_before = os.getloadavg()[0]
    n_frames = args.frames or args.batch * (args.warmup + args.steps)
    n_videos = math.ceil(n_frames / FRAMES_PER_VIDEO)

    with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bench_train_") as tmp:
        t0 = time.perf_counter()
        paths, labels = write_shards(Path(tmp), n_videos, args.shards, h, w)
        index = build_index("img", paths, labels)
        write_s = time.perf_counter() - t0
        mb = sum(Path(p).stat().st_size for p in paths) / 1e6
        print(
            f"{len(index)} frames {h}x{w} in {len(paths)} shard files ({mb:.0f} MB), "
            f"written in {write_s:.1f} s",
            file=sys.stderr,
        )
        frames = preload(index)
        pixels = torch.cat(
            [resize_batch(frames[i : i + 256], args.input_size) for i in range(0, len(frames), 256)]
        ).to(device)
        del frames
        labels_dev = torch.from_numpy(index.labels).to(device)

        dan = DanConfig(
            width_divisor=args.width_divisor,
            batch_norm=args.batch_norm,
            input_size=args.input_size,
        )
        torch.manual_seed(0)
        model = DanPlus(dan).to(device)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train()
        optimizer = make_optimizer(model, TrainConfig(optimizer=args.optimizer))
        step = make_step(model, optimizer, device, args.amp)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        augmentation = Augmentation(
            tuple(args.crop_scale), args.crop_aspect, args.jitter, args.color_jitter
        )
        # case name -> loader workers; None: in-memory
        setups = {"in-memory": None}
        setups.update({f"loader, {n} workers": n for n in args.num_workers})
        cases = list(setups)
        ips: dict[str, list[float]] = {c: [] for c in cases}
        cut: dict[str, int] = {}  # case -> runs stopped early by --case-seconds
        for r in range(args.repeats):
            plan = epoch_plan(len(index), args.batch, 0, r, 0.5, augmentation)
            plan = [b for b in plan if len(b.positions) == args.batch]
            plan = plan[: args.warmup + args.steps]
            if len(plan) < args.warmup + args.steps:
                sys.exit(f"--frames {n_frames}: too few for {args.warmup + args.steps} batches")
            order = cases[r % len(cases) :] + cases[: r % len(cases)]
            for case in order:
                if case == "in-memory":
                    source = memory_batches(pixels, labels_dev, plan, dan.input_size, device)
                else:
                    source = loader_source(
                        index, plan, dan.input_size, device, setups[case], args.threads
                    )
                value, done = timed(
                    source, step, args.warmup, args.steps, args.batch, device, args.case_seconds
                )
                if done < args.steps:
                    cut[case] = cut.get(case, 0) + 1
                source.close()  # the loader's workers end here, outside the timing
                ips[case].append(value)
                print(
                    f"repeat {r + 1}/{args.repeats} {case}: {value:.1f} images/s "
                    f"({done} timed steps)",
                    file=sys.stderr,
                )

    ref = ips["in-memory"]
    ratios = {c: statistics.median(v / m for v, m in zip(ips[c], ref, strict=True)) for c in cases}
    result = {
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": {
            "width_divisor": args.width_divisor,
            "batch_norm": args.batch_norm,
            "input_size": args.input_size,
            "optimizer": args.optimizer,
            "channels_last": args.channels_last,
            "amp_bf16": bool(args.amp and device.type == "cuda"),
        },
        "frame_size": f"{h}x{w}",
        "frames": len(index),
        "batch": args.batch,
        "warmup": args.warmup,
        "steps": args.steps,
        "repeats": args.repeats,
        "threads": args.threads,
        "augmentation": {
            "crop_scale": list(augmentation.crop_scale),
            "crop_aspect": augmentation.crop_aspect,
            "jitter": augmentation.jitter,
            "color_jitter": augmentation.color_jitter,
        },
        "images_per_s": {c: round(statistics.median(v), 1) for c, v in ips.items()},
        "images_per_s_per_repeat": {c: [round(v, 1) for v in ips[c]] for c in cases},
        "x_in_memory": {c: round(ratios[c], 3) for c in cases},
        "cut_short_by_case_seconds": cut,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    loader_cases = [c for c in cases if setups[c] is not None]
    best = max(loader_cases, key=lambda c: ratios[c])
    result["images_per_s_in_memory"] = result["images_per_s"]["in-memory"]
    result["images_per_s_loader"] = result["images_per_s"][best]
    result["ratio_loader_in_memory"] = result["x_in_memory"][best]
    result["best_loader"] = best
    result["preloaded_frames_gib"] = round(pixels.numel() / 2**30, 2)
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)

    print(
        f"\nmachine: {result['device']}; torch {result['torch']}; {args.threads} torch "
        f"thread(s); load average {result['load_average'][0]} before, "
        f"{result['load_average'][1]} after; loader augmentation {result['augmentation']}"
    )
    print("\n| case | images/s | x in-memory | images/s per repeat |")
    print("|---|---|---|---|")
    for c in cases:
        per = ", ".join(f"{v:.1f}" for v in ips[c])
        print(f"| {c} | {statistics.median(ips[c]):.1f} | **{ratios[c]:.2f}** | {per} |")
    print(json.dumps(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
