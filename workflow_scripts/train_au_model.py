"""Snakemake entry: AU model (ridge on the 17 per-video AU means) -> model.json + predictions."""

from traitlens.au_regression import read_au_features
from traitlens.errors import run_entry
from traitlens.ridge import train_linear_model


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    train_linear_model(
        "aus",
        read_au_features(sm.input.aus),
        sm.input.labels,
        sm.params.alphas,
        sm.params.default_alpha,
        sm.output.model,
        sm.output.predictions,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
