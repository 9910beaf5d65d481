"""Snakemake entry: train the image or face DAN+ model -> weights, training log, loss curve."""

from pathlib import Path

from traitlens.core.errors import run_entry
from traitlens.models.dan import DanConfig
from traitlens.models.predictions import read_labels
from traitlens.models.train import TrainConfig
from traitlens.models.visual_model import (
    RunConfig,
    plot_history,
    save_weights,
    train_visual,
    write_history,
)


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    settings = dict(sm.params.model)
    run = RunConfig.from_mapping({**sm.params.run, "threads": sm.threads})
    model, history = train_visual(
        kind=sm.params.kind,
        data_paths=list(sm.input.data),
        labels=read_labels(sm.input.labels),
        dan=DanConfig.from_mapping(settings),
        train_cfg=TrainConfig.from_mapping(settings),
        weights=settings.get("weights"),
        run=run,
        checkpoints=Path(sm.params.checkpoints),
    )
    save_weights(model, sm.params.kind, sm.output.weights)
    write_history(history, sm.output.history)
    plot_history(history, f"{sm.wildcards.model} model", sm.output.figure)


run_entry(main, snakemake.log[0])  # noqa: F821
