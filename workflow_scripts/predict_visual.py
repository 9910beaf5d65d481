"""Rule predict_visual (rules/train.smk): a trained image or face model's predictions."""

from traitlens.core.errors import run_rule
from traitlens.models.rules import predict_visual

run_rule(predict_visual, snakemake)  # noqa: F821 (injected by Snakemake)
