"""Rule plot_emergence_null (rules/analysis.smk): the AU-emergence nulls as a figure."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import plot_emergence_null

run_rule(plot_emergence_null, snakemake)  # noqa: F821 (injected by Snakemake)
