"""Rule evaluate_models (rules/train.smk): the accuracy tables and figure of every model."""

from traitlens.core.errors import run_rule
from traitlens.evaluation.rules import evaluate_models

run_rule(evaluate_models, snakemake)  # noqa: F821 (injected by Snakemake)
