"""Rule dump_activations (rules/activations.smk): per-unit activation dumps of one model."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import dump_activations

run_rule(dump_activations, snakemake)  # noqa: F821 (injected by Snakemake)
