"""Rule train_visual (rules/train.smk): the image or face DAN+ model, its log and loss curve."""

from traitlens.core.errors import run_rule
from traitlens.models.rules import train_visual

run_rule(train_visual, snakemake)  # noqa: F821 (injected by Snakemake)
