"""Snakemake entry: a trained image/face model's predictions per frame and per video."""

from traitlens.core.errors import run_entry
from traitlens.models.predictions import read_labels, write_predictions
from traitlens.models.visual_model import (
    RunConfig,
    load_trained,
    predict_visual,
    write_frame_predictions,
)


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    model, kind = load_trained(sm.input.weights)
    run = RunConfig.from_mapping({**sm.params.run, "threads": sm.threads})
    frames, videos = predict_visual(
        model, kind, list(sm.input.data), read_labels(sm.input.labels), sm.params.batch_size, run
    )
    write_frame_predictions(frames, sm.output.frames)
    write_predictions(videos, sm.output.videos)


run_entry(main, snakemake.log[0])  # noqa: F821
