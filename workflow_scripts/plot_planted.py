"""Rule plot_planted (rules/analysis.smk): the planted-truth scorecard for the report."""

from traitlens.core.errors import run_rule
from traitlens.demo.rules import plot_planted

run_rule(plot_planted, snakemake)  # noqa: F821 (injected by Snakemake)
