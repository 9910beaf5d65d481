"""Rule train_linear_model (rules/train.smk): a ridge model on audio or AU features."""

from traitlens.core.errors import run_rule
from traitlens.models.rules import train_linear_model

run_rule(train_linear_model, snakemake)  # noqa: F821 (injected by Snakemake)
