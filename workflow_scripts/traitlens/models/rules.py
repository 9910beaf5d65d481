"""Rules of the model stage (rules/train.smk): one function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``.
PyTorch is imported inside the rules that use it: the ridge and fusion rules run in the
light core env.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from traitlens.core.errors import Job
from traitlens.models.au_regression import read_au_features
from traitlens.models.audio_model import read_audio_features
from traitlens.models.fusion import choose_image_weight, fuse
from traitlens.models.predictions import (
    PRODUCED_BY,
    read_labels,
    read_predictions,
    write_predictions,
)
from traitlens.models.ridge import train_linear_model as fit_linear_model

if TYPE_CHECKING:
    from traitlens.models.visual_model import RunConfig

log = logging.getLogger("traitlens.models")

FEATURE_READERS = {"audio": read_audio_features, "aus": read_au_features}


def loader_workers(num_workers: int, threads: int) -> int:
    """DataLoader worker processes for a job given ``threads`` cores: config
    ``train.num_workers``, at most one fewer than the job's threads (the job's own process
    keeps one), so a job never starts more readers than the cores it was given."""
    return max(0, min(int(num_workers), int(threads) - 1))


def run_config(job: Job) -> RunConfig:
    """Where and how a PyTorch job runs. ``amp`` (bfloat16 on CUDA) changes the results, so
    it is a rule param; the device and the loader workers do not, so they come from the
    config (``train``), and a change re-runs nothing; threads are the job's."""
    from traitlens.models.visual_model import RunConfig

    train = job.config["train"]
    threads = max(1, int(job.threads))
    return RunConfig(
        device=str(train["device"]),
        amp=bool(job.params.amp),
        num_workers=loader_workers(train["num_workers"], threads),
        threads=threads,
    )


def train_visual(job: Job) -> None:
    """Train the image or face DAN+ model: weights, training log and loss curve. A killed
    job resumes from the checkpoints next to the weights."""
    from traitlens.models.dan import DanConfig
    from traitlens.models.train import TrainConfig
    from traitlens.models.visual_model import (
        plot_history,
        save_weights,
        write_history,
    )
    from traitlens.models.visual_model import (
        train_visual as train_model,
    )

    settings = dict(job.params.model)
    model, history = train_model(
        kind=job.params.kind,
        data_paths=list(job.input.data),
        labels=read_labels(job.input.labels),
        dan=DanConfig.from_mapping(settings),
        train_cfg=TrainConfig.from_mapping(settings),
        weights=settings.get("weights"),
        run=run_config(job),
        checkpoints=Path(job.output.weights).parent / "checkpoints",
    )
    save_weights(model, job.params.kind, job.output.weights)
    write_history(history, job.output.history)
    plot_history(history, f"{job.wildcards.model} model", job.output.figure)


def init_random_model(job: Job) -> None:
    """The control network: a visual model's architecture, freshly initialised from a
    seed and never trained (no backbone weights file either), saved as a weights file.
    Analyses run on it show what an untrained network of the same shape already does
    (Adebayo et al. 2018's model-randomisation check)."""
    from traitlens.models.dan import DanConfig
    from traitlens.models.visual_model import build_model, save_weights

    dan = DanConfig.from_mapping(dict(job.params.model))
    model = build_model(dan, weights=None, seed=int(job.params.seed))
    save_weights(model.eval(), job.params.kind, job.output.weights)
    log.info("%s: untrained %s network (seed %d)", job.output.weights, dan.head, job.params.seed)


def predict_visual(job: Job) -> None:
    """A trained image or face model's predictions per frame and per video, in batches of
    config ``train.predict_batch_size`` (they do not change the predictions)."""
    from traitlens.models.visual_model import load_trained, write_frame_predictions
    from traitlens.models.visual_model import predict_visual as predict

    model, kind = load_trained(job.input.weights)
    frames, videos = predict(
        model,
        kind,
        list(job.input.data),
        read_labels(job.input.labels),
        int(job.config["train"]["predict_batch_size"]),
        run_config(job),
    )
    write_frame_predictions(frames, job.output.frames)
    write_predictions(videos, job.output.videos)


def train_linear_model(job: Job) -> None:
    """A ridge model on per-video features (audio: pooled log-mel features of the audio
    shard files; aus: per-video means of the 17 OpenFace AUs): model.json, predictions."""
    kind = job.params.kind
    fit_linear_model(
        kind,
        FEATURE_READERS[kind](list(job.input.features)),
        job.input.labels,
        job.params.alphas,
        job.params.default_alpha,
        job.output.model,
        job.output.predictions,
    )


def fuse_predictions(job: Job) -> None:
    """Late fusion of the image and audio predictions (img+audio)."""
    image = read_predictions(job.input.image, PRODUCED_BY["img"])
    audio = read_predictions(job.input.audio, PRODUCED_BY["audio"])
    weight = job.params.image_weight
    if weight == "validation":
        weight, maes = choose_image_weight(image, audio, read_labels(job.input.labels))
        log.info("validation MAE per image weight: %s", {w: round(m, 5) for w, m in maes.items()})
    fused, counts = fuse(image, audio, weight)
    log.info("image weight %g, audio weight %g", weight, 1 - weight)
    for split, c in counts.items():
        log.info("%s: %s", split, c.line())
    write_predictions(fused, job.output.predictions)
