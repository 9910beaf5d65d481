"""Training loop of the visual models: seeded, checkpointed every epoch, resumable.

docs/method.md §1: squared-error loss, batch 32, learning rate log-spaced from lr_start to
lr_end over the epochs, random horizontal flips (and, where configured, random resized
crops and brightness/contrast/colour jitter: train_data.Augmentation). A checkpoint (model,
optimiser, epoch, history) is written atomically after every epoch next to the outputs;
a job killed mid-run resumes from the last one and ends with the same weights as an
uninterrupted run, because the data order, flips and augmentation depend on (seed,
epoch) only. A checkpoint whose fingerprint (settings + training inputs) differs from
the current run's is ignored, so a changed config or rebuilt input never continues a
stale run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from traitlens.core.atomic import atomic_path
from traitlens.core.config import from_section
from traitlens.core.errors import UserError
from traitlens.core.faults import kill_point
from traitlens.models.train_data import Augmentation

log = logging.getLogger("traitlens.models.train")

HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "val_loss",
    "val_mae",
    "seconds",
    "images_per_s",
)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (config ``models.visual`` / ``models.<model>``)."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"  # sgd | adam
    lr_start: float = 1e-3
    lr_end: float = 1e-6
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip_p: float = 0.5
    seed: int = 0
    # training-only augmentation (train_data.Augmentation); the defaults leave frames as read
    crop_scale: tuple[float, float] = (1.0, 1.0)
    crop_aspect: float = 1.0
    jitter: float = 0.0
    color_jitter: float = 0.0

    def __post_init__(self) -> None:
        # the one rule the schema cannot state: the crop's smallest side <= its largest
        lo, hi = self.crop_scale
        if lo > hi:
            raise UserError(
                f"config models.<model>.crop_scale {list(self.crop_scale)}: expected "
                "[min, max] with min <= max (the crop's side as a fraction of the frame's); "
                "[1.0, 1.0] turns cropping off"
            )

    @classmethod
    def from_mapping(cls, values: Mapping) -> TrainConfig:
        """From a model's validated settings (models.visual with models.<model> on top)."""
        return from_section(cls, values, "models.<model>")

    def augmentation(self) -> Augmentation:
        return Augmentation(self.crop_scale, self.crop_aspect, self.jitter, self.color_jitter)


def learning_rates(cfg: TrainConfig) -> np.ndarray:
    """logspace(log10 lr_start, log10 lr_end, epochs): the authors' schedule."""
    if cfg.epochs == 1:
        return np.array([cfg.lr_start])
    return np.logspace(math.log10(cfg.lr_start), math.log10(cfg.lr_end), cfg.epochs)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr_start, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr_start, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def fingerprint(settings: Mapping, inputs: Sequence[str | Path]) -> str:
    """Hash of the run's settings and of its input files (path, size, mtime)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        st = Path(path).stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"config train.device is '{name}' but PyTorch sees no CUDA device here; "
            "use device: auto (CUDA when present, else CPU) or run on a GPU node"
        )
    return torch.device(name)


# --- checkpoints ----------------------------------------------------------------------


def checkpoint_path(folder: Path, epoch: int) -> Path:
    return folder / f"epoch_{epoch:03d}.pt"


def save_checkpoint(folder: Path, state: dict) -> Path:
    """Write epoch ``state['epoch']``'s checkpoint atomically, then drop older ones."""
    path = checkpoint_path(folder, state["epoch"])
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in folder.glob("epoch_*.pt"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_last_checkpoint(folder: Path, expected_fingerprint: str) -> dict | None:
    """The newest checkpoint of this very run (same fingerprint), or None."""
    for path in sorted(folder.glob("epoch_*.pt"), reverse=True):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged checkpoint is skipped, never trusted
            log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
            continue
        if state.get("fingerprint") == expected_fingerprint:
            return state
        log.info("ignoring checkpoint %s: it belongs to other settings or inputs", path)
    return None


# --- the loop -------------------------------------------------------------------------


def training_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, use_amp: bool) -> float:
    """Forward (bfloat16 autocast when ``use_amp``), squared error, backward, step; the
    batch's mean loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        pred = model(x)
    loss = F.mse_loss(pred.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


# epoch -> the epoch's batches: (x float NCHW on the device, y (n, 5) on the device)
BatchSource = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def train_model(
    model: torch.nn.Module,
    cfg: TrainConfig,
    train_batches: BatchSource,
    evaluate: Callable[[], tuple[float, float]],
    checkpoints: Path,
    run_fingerprint: str,
    device: torch.device,
    amp: bool,
) -> list[dict]:
    """Train for cfg.epochs, resuming from a matching checkpoint; returns the history.

    ``evaluate()`` gives (val_loss, val_mae) with the model in eval mode (NaN, NaN when
    there is no validation data).
    """
    seed_everything(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    history: list[dict] = []
    start = 0
    state = load_last_checkpoint(checkpoints, run_fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in state["history"]]
        start = int(state["epoch"])
        log.info("resuming after epoch %d from %s", start, checkpoints)
    use_amp = amp and device.type == "cuda"
    lrs = learning_rates(cfg)
    for epoch in range(start, cfg.epochs):
        for group in optimizer.param_groups:
            group["lr"] = float(lrs[epoch])
        model.train()
        t0, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(train_batches(epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for x, y in bar:
            total += training_step(model, optimizer, x, y, use_amp) * len(y)
            seen += len(y)
        seconds = time.perf_counter() - t0
        val_loss, val_mae = evaluate()
        history.append(
            {
                "epoch": epoch + 1,
                "lr": float(lrs[epoch]),
                "train_loss": total / max(seen, 1),
                "val_loss": val_loss,
                "val_mae": val_mae,
                "seconds": seconds,
                "images_per_s": seen / seconds if seconds > 0 else float("nan"),
            }
        )
        log.info(
            "epoch %d/%d lr %.2e train loss %.5f val loss %.5f val MAE %.4f (%.0f images/s)",
            epoch + 1,
            cfg.epochs,
            lrs[epoch],
            history[-1]["train_loss"],
            val_loss,
            val_mae,
            history[-1]["images_per_s"],
        )
        save_checkpoint(
            checkpoints,
            {
                "epoch": epoch + 1,
                "fingerprint": run_fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": [[h[c] for c in HISTORY_COLUMNS] for h in history],
            },
        )
        kill_point("train_visual")
    return history
