"""Snakemake entry: a ridge model on per-video features -> model.json + predictions.

``params.kind`` audio: pooled log-mel features of the audio shard files; aus: the
per-video means of the 17 OpenFace AUs.
"""

from traitlens.core.errors import run_entry
from traitlens.models.au_regression import read_au_features
from traitlens.models.audio_model import read_audio_features
from traitlens.models.ridge import train_linear_model

FEATURE_READERS = {"audio": read_audio_features, "aus": read_au_features}


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    kind = sm.params.kind
    train_linear_model(
        kind,
        FEATURE_READERS[kind](list(sm.input.features)),
        sm.input.labels,
        sm.params.alphas,
        sm.params.default_alpha,
        sm.output.model,
        sm.output.predictions,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
