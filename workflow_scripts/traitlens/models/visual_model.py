"""The image and face models end to end: build, train from shard files, save, predict.

``models/<model>/weights.pt`` holds ``{"format", "kind", "dan_config", "model"}`` (a
state dict and plain values only, so it loads with ``weights_only=True``).
Predictions: one row per frame (``frame_predictions.tsv``) and per video, the mean over
its frames (``predictions.tsv``, docs/method.md §1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from traitlens.core.atomic import atomic_path, save_figure
from traitlens.core.config import from_section
from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.models.dan import DanConfig, DanPlus, make_model
from traitlens.models.train import (
    HISTORY_COLUMNS,
    TrainConfig,
    fingerprint,
    resolve_device,
    seed_everything,
    train_model,
)
from traitlens.models.train_data import (
    SampleIndex,
    batch_loader,
    build_index,
    epoch_plan,
    sequential_plan,
    to_model_input,
)

log = logging.getLogger("traitlens.models.visual_model")

WEIGHTS_FORMAT = "traitlens-dan-plus-1"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where and how a job runs (config ``train``)."""

    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    threads: int = 2

    @classmethod
    def from_mapping(cls, values: Mapping) -> RunConfig:
        """From the validated ``train`` section (its other keys are the rules' business)."""
        return from_section(cls, values, "train")


def build_model(dan: DanConfig, weights: str | None, seed: int) -> DanPlus:
    """A DAN+ with seeded initialisation, its backbone optionally from a weights file."""
    seed_everything(seed)
    model = make_model(dan)
    if weights:
        from traitlens.models.weights import load_backbone_weights

        loaded = load_backbone_weights(model, weights)
        log.info("backbone initialised from %s (%d layers)", weights, len(loaded))
    return model


def on_device(model: DanPlus, device: torch.device) -> DanPlus:
    """The model on ``device``; channels_last on CUDA, the layout the loader hands over."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def model_batches(kind, index, plan, size, device, run: RunConfig):
    """(model input, labels, positions) per batch of ``plan``, on ``device`` (CUDA: the
    next batch is copied while the model works on this one)."""
    loader = batch_loader(
        kind, index, plan, size, run.num_workers, pin_memory=device.type == "cuda"
    )
    if device.type == "cuda":
        yield from _cuda_prefetched(loader, device)
        return
    for pixels, flips, labels, pos in loader:
        yield to_model_input(pixels, flips, device), labels.to(device), pos


def _cuda_prefetched(loader, device):
    """Copy batch i+1 on a side stream while the model works on batch i: on the default
    stream the host->GPU copy would wait for the model."""
    side = torch.cuda.Stream(device)

    def stage(item):
        pixels, flips, labels, pos = item
        with torch.cuda.stream(side):
            return (
                to_model_input(pixels, flips, device),
                labels.to(device, non_blocking=True),
                pos,
            )

    batches = iter(loader)
    item = next(batches, None)
    staged = stage(item) if item is not None else None
    while staged is not None:
        main = torch.cuda.current_stream(device)
        main.wait_stream(side)
        x, y, pos = staged
        x.record_stream(main)  # allocated on the side stream, used on the main one
        y.record_stream(main)
        item = next(batches, None)
        staged = stage(item) if item is not None else None
        yield x, y, pos


@torch.no_grad()
def predict_index(
    model: DanPlus, kind: str, index: SampleIndex, batch_size: int, device, run: RunConfig
) -> np.ndarray:
    """(len(index), 5) predictions in index order (eval mode, no flips)."""
    model.eval()
    out = np.empty((len(index), len(BIG_FIVE)), dtype=np.float32)
    plan = sequential_plan(len(index), batch_size)
    use_amp = run.amp and device.type == "cuda"
    batches = model_batches(kind, index, plan, model.cfg.input_size, device, run)
    for x, _, pos in tqdm(batches, total=len(plan), desc="predicting", unit="batch"):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = model(x)
        out[pos.numpy()] = pred.float().cpu().numpy()
    return out


def train_visual(
    kind: str,
    data_paths: Sequence[str],
    labels: pd.DataFrame,
    dan: DanConfig,
    train_cfg: TrainConfig,
    weights: str | None,
    run: RunConfig,
    checkpoints: Path,
) -> tuple[DanPlus, list[dict]]:
    """Train the ``kind`` (img | face) model on the train split; monitor validation."""
    device = resolve_device(run.device)
    torch.set_num_threads(max(1, run.threads))
    index = build_index(kind, data_paths, labels)
    train_idx = index.subset(index.split == "train")
    val_idx = index.subset(index.split == "validation")
    if len(train_idx) == 0:
        raise UserError(
            f"no training samples for the {kind} model: no {kind} rows of train-split videos "
            f"in {len(data_paths)} shard file(s); check the QC tables"
        )
    log.info(
        "%s model: %d train / %d validation samples on %s",
        kind,
        len(train_idx),
        len(val_idx),
        device,
    )
    model = on_device(build_model(dan, weights, train_cfg.seed), device)
    settings = {
        "kind": kind,
        "dan": dataclasses.asdict(dan),
        "train": dataclasses.asdict(train_cfg),
        "weights": weights,
        # a label change must not continue a run trained (or monitored) on the old labels
        "labels_sha256": hashlib.sha256(
            train_idx.labels.tobytes() + val_idx.labels.tobytes()
        ).hexdigest(),
    }
    run_fp = fingerprint(settings, [*data_paths, *([weights] if weights else [])])

    def train_batches(epoch: int):
        plan = epoch_plan(
            len(train_idx),
            train_cfg.batch_size,
            train_cfg.seed,
            epoch,
            train_cfg.flip_p,
            train_cfg.augmentation(),
        )
        for x, y, _ in model_batches(kind, train_idx, plan, dan.input_size, device, run):
            yield x, y

    def evaluate() -> tuple[float, float]:
        if len(val_idx) == 0:
            return float("nan"), float("nan")
        pred = predict_index(model, kind, val_idx, train_cfg.batch_size, device, run)
        truth = val_idx.labels
        video_mae = _video_mae(pred, truth, val_idx.video_id)
        return float(np.mean((pred - truth) ** 2)), video_mae

    checkpoints.mkdir(parents=True, exist_ok=True)
    history = train_model(
        model, train_cfg, train_batches, evaluate, checkpoints, run_fp, device, run.amp
    )
    return model, history


def _video_mae(pred: np.ndarray, truth: np.ndarray, video_id: np.ndarray) -> float:
    """MAE of per-video mean predictions (the study's unit)."""
    frame = pd.DataFrame(np.hstack([pred, truth]))
    frame["video_id"] = video_id
    means = frame.groupby("video_id").mean().to_numpy()
    k = pred.shape[1]
    return float(np.abs(means[:, :k] - means[:, k:]).mean())


def save_weights(model: DanPlus, kind: str, path: str | Path) -> None:
    state = {
        "format": WEIGHTS_FORMAT,
        "kind": kind,
        "dan_config": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(model.cfg).items()
        },
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_trained(path: str | Path) -> tuple[DanPlus, str]:
    """A trained model (eval mode, CPU) and its kind from a weights.pt of save_weights."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"{path}: not a traitlens weights file ({err}); delete it and rerun snakemake "
            "so that the train_visual rule rebuilds it"
        ) from None
    if not isinstance(state, dict) or state.get("format") != WEIGHTS_FORMAT:
        raise UserError(
            f"{path}: not a traitlens weights file (format tag missing); delete it and rerun "
            "snakemake so that the train_visual rule rebuilds it"
        )
    model = make_model(DanConfig.from_mapping(state["dan_config"]))
    model.load_state_dict(state["model"])
    return model.eval(), state["kind"]


def history_table(history: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(history, columns=list(HISTORY_COLUMNS))


def write_history(history: list[dict], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        history_table(history).to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def plot_history(history: list[dict], title: str, path: str | Path) -> None:
    """Loss curves: train and validation squared error per epoch, validation MAE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = history_table(history)
    fig, (ax_loss, ax_mae) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(table["epoch"], table["train_loss"], "o-", label="train")
    ax_loss.plot(table["epoch"], table["val_loss"], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="squared error per frame", yscale="log", title=title)
    ax_loss.legend()
    ax_mae.plot(table["epoch"], table["val_mae"], "s-", color="C1")
    ax_mae.set(xlabel="epoch", ylabel="validation MAE (video means)", title="validation")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def predict_visual(
    model: DanPlus,
    kind: str,
    data_paths: Sequence[str],
    labels: pd.DataFrame,
    batch_size: int,
    run: RunConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(frame table, video table): predictions for every usable frame of every split."""
    device = resolve_device(run.device)
    torch.set_num_threads(max(1, run.threads))
    model = on_device(model, device)
    index = build_index(kind, data_paths, labels)
    pred = predict_index(model, kind, index, batch_size, device, run)
    frames = pd.DataFrame(
        {
            "video_id": index.video_id,
            "frame_index": index.frame_index,
            "split": index.split,
            "shard_file": [Path(index.paths[n]).name for n in index.file],
            "row": index.row,
        }
    )
    for k, trait in enumerate(BIG_FIVE):
        frames[trait] = pred[:, k]
    videos = frames.groupby(["video_id", "split"], sort=True)[list(BIG_FIVE)].mean().reset_index()
    return frames, videos


def write_frame_predictions(frames: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frames.to_csv(tmp, sep="\t", index=False, float_format="%.6f")
