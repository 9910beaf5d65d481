"""GPU baseline for the models issue: a DAN+-shaped VGG16 training step on CUDA.

Run on a lent GPU machine (device tool):  python3 bench/gpu_vgg16_baseline.py
Measures (a) CUDA vs CPU correctness of the forward pass, fp32 and autocast, and
(b) training images/s at 224x224, batch 32 (forward + backward + SGD step), for fp32,
fp16 autocast + GradScaler and bf16 autocast, from in-memory GPU tensors and from
pinned uint8 host batches copied per step (what a real loader hands over).
It is a preliminary figure for issue 4's benchmark, not the workflow's model code.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16


class DanPlusShape(nn.Module):
    """VGG16 conv layers; avg+max pooling of relu5_2 and pool5, L2-normalised, linear."""

    def __init__(self):
        super().__init__()
        features = vgg16(weights=None).features
        self.to_relu5_2 = features[:28]  # up to relu5_2 (14x14 at 224 input)
        self.to_pool5 = features[28:]  # conv5_3, relu5_3, pool5 (7x7)
        self.head = nn.Linear(2048, 5)

    def forward(self, x):
        a = self.to_relu5_2(x)
        b = self.to_pool5(a)
        pooled = [
            F.normalize(p.flatten(1), dim=1)
            for m in (a, b)
            for p in (F.adaptive_avg_pool2d(m, 1), F.adaptive_max_pool2d(m, 1))
        ]
        return torch.sigmoid(self.head(torch.cat(pooled, dim=1)))


def correctness(device):
    torch.manual_seed(0)
    model = DanPlusShape().eval()
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
        gpu_model = model.to(device)
        out32 = gpu_model(x.to(device)).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outbf = gpu_model(x.to(device)).float().cpu()
        with torch.autocast("cuda", dtype=torch.float16):
            outfp16 = gpu_model(x.to(device)).float().cpu()
    return {
        "max_abs_diff_fp32_vs_cpu": float((out32 - ref).abs().max()),
        "max_abs_diff_bf16_vs_cpu": float((outbf - ref).abs().max()),
        "max_abs_diff_fp16_vs_cpu": float((outfp16 - ref).abs().max()),
    }


def throughput(device, precision, source, batch=32, steps=30, warmup=8, channels_last=False):
    torch.manual_seed(0)
    model = DanPlusShape().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    mean = torch.tensor([129.2, 104.8, 93.6], device=device).view(1, 3, 1, 1)
    y = torch.rand(batch, 5, device=device)
    if source == "memory":
        x_mem = torch.randn(batch, 3, 224, 224, device=device)
    else:  # pinned uint8 NHWC host batches, as decoded frames arrive from HDF5
        host = [
            torch.randint(0, 255, (batch, 224, 224, 3), dtype=torch.uint8).pin_memory()
            for _ in range(4)
        ]

    def step(i):
        if source == "memory":
            x = x_mem
        else:
            x = host[i % 4].to(device, non_blocking=True).permute(0, 3, 1, 2).float() - mean
            if torch.rand(()) < 0.5:
                x = x.flip(3)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = F.mse_loss(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for i in range(warmup):
        step(i)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main():
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    report = {
        "card": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "correctness": correctness(device),
        "images_per_s": {},
    }
    for precision in ("fp32", "fp16", "bf16"):
        for source in ("memory", "pinned_uint8"):
            key = f"{precision}/{source}"
            report["images_per_s"][key] = round(throughput(device, precision, source), 1)
            print(key, report["images_per_s"][key], flush=True)
    for cl in (True,):
        key = "bf16/memory/channels_last"
        report["images_per_s"][key] = round(
            throughput(device, "bf16", "memory", channels_last=cl), 1
        )
    report["images_per_s"]["bf16/memory/batch128"] = round(
        throughput(device, "bf16", "memory", batch=128, steps=15), 1
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
