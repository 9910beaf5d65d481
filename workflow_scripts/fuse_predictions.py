"""Rule fuse_predictions (rules/train.smk): late fusion of the image and audio predictions."""

from traitlens.core.errors import run_rule
from traitlens.models.rules import fuse_predictions

run_rule(fuse_predictions, snakemake)  # noqa: F821 (injected by Snakemake)
