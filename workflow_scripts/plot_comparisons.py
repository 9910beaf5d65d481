"""Rule plot_comparisons (rules/analysis.smk): the paired model comparisons as a figure."""

from traitlens.core.errors import run_rule
from traitlens.evaluation.rules import plot_comparisons

run_rule(plot_comparisons, snakemake)  # noqa: F821 (injected by Snakemake)
