"""Rule init_random_model (rules/train.smk): an untrained network, the control of the analyses."""

from traitlens.core.errors import run_rule
from traitlens.models.rules import init_random_model

run_rule(init_random_model, snakemake)  # noqa: F821 (injected by Snakemake)
