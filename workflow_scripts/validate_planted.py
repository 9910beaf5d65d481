"""Rule validate_planted (rules/analysis.smk): the analyses scored against the planted truth."""

from traitlens.core.errors import run_rule
from traitlens.demo.rules import validate_planted

run_rule(validate_planted, snakemake)  # noqa: F821 (injected by Snakemake)
