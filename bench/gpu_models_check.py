"""GPU checks of the models stage, for a lent GPU machine (device tool), in one command.

1. CUDA correctness: DAN+ (full VGG16, and the narrow batch-norm demo net) on CUDA in
   fp32 and under bf16 autocast against the CPU fp32 forward pass of the same weights.
2. The workflow's own training path on CUDA: ``train_visual`` (shard HDF5 files ->
   DataLoader workers -> bf16 autocast, channels_last -> checkpoint per epoch) for two
   epochs of VGG16 at 224x224 on First-Impressions-sized synthetic frames, then
   ``predict_visual``; prints images/s per epoch from the training history.

Run on the GPU machine from the repository root (its python3 holds PyTorch; h5py and
pandas come from wheels carried in .gpuwheels/):
    python3 bench/gpu_models_check.py --json $OUT/gpu_models_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow_scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from traitlens.models.dan import DanConfig, DanPlus  # noqa: E402


def correctness() -> dict:
    out = {}
    for name, cfg in {
        "vgg16_224": DanConfig(width_divisor=1, batch_norm=False, input_size=224),
        "narrow8_bn_96": DanConfig(
            width_divisor=8, batch_norm=True, input_size=96, input_scale=1 / 64
        ),
    }.items():
        torch.manual_seed(0)
        model = DanPlus(cfg).eval()
        x = torch.randint(0, 256, (8, 3, cfg.input_size, cfg.input_size), dtype=torch.uint8)
        with torch.no_grad():
            ref = model(x)
            gpu = model.to("cuda")
            fp32 = gpu(x.cuda()).cpu()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                bf16 = gpu(x.cuda()).float().cpu()
            gpu_cl = gpu.to(memory_format=torch.channels_last)
            cl = gpu_cl(x.cuda().contiguous(memory_format=torch.channels_last)).cpu()
        out[name] = {
            "max_abs_diff_fp32": float((fp32 - ref).abs().max()),
            "max_abs_diff_fp32_channels_last": float((cl - ref).abs().max()),
            "max_abs_diff_bf16_autocast": float((bf16 - ref).abs().max()),
            "output_sd": float(ref.std()),
        }
    return out


def workflow_training(
    n_frames: int, epochs: int, workers: int, device: str = "cuda", width_divisor: int = 1
) -> dict:
    from bench_train import write_shards  # same folder: the loader benchmark's data

    from traitlens.models.train import TrainConfig
    from traitlens.models.visual_model import RunConfig, predict_visual, train_visual

    with tempfile.TemporaryDirectory() as tmp:
        paths, labels = write_shards(
            Path(tmp), n_videos=n_frames // 10, n_shards=8, height=360, width=640
        )
        dan = DanConfig(width_divisor=1, batch_norm=False, input_size=224)
        cfg = TrainConfig(epochs=epochs, batch_size=32, optimizer="sgd", lr_start=1e-3, lr_end=1e-4)
        run = RunConfig(device=device, amp=True, num_workers=workers, threads=4)
        t0 = time.perf_counter()
        model, history = train_visual(
            "img", paths, labels, dan, cfg, None, run, Path(tmp) / "checkpoints"
        )
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames, videos = predict_visual(model, "img", paths, labels, 128, run)
        predict_s = time.perf_counter() - t0
        checkpoints = sorted(p.name for p in (Path(tmp) / "checkpoints").iterdir())
    return {
        "n_frames": n_frames,
        "num_workers": workers,
        "epochs": [
            {k: h[k] for k in ("epoch", "train_loss", "images_per_s", "seconds")} for h in history
        ],
        "train_total_s": train_s,
        "predict_s": predict_s,
        "predict_images_per_s": len(frames) / predict_s,
        "predictions_finite": bool(frames.iloc[:, -5:].notna().all().all()),
        "n_videos_predicted": len(videos),
        "checkpoints_left": checkpoints,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=3200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--smoke", action="store_true", help="CPU, narrow net, few frames: checks the script"
    )
    args = parser.parse_args()
    if args.smoke:
        print(json.dumps(workflow_training(40, 1, 0, "cpu", 16)))
        return
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "correctness": correctness(),
    }
    print(json.dumps(result), flush=True)
    result["workflow_training"] = workflow_training(args.frames, args.epochs, args.workers)
    print(json.dumps(result["workflow_training"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
