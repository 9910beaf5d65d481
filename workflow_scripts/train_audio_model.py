"""Snakemake entry: audio model (ridge on pooled log-mel features) -> model.json + predictions."""

from traitlens.audio_model import read_audio_features
from traitlens.errors import run_entry
from traitlens.ridge import train_linear_model


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    train_linear_model(
        "audio",
        read_audio_features(sm.input.audio),
        sm.input.labels,
        sm.params.alphas,
        sm.params.default_alpha,
        sm.output.model,
        sm.output.predictions,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
