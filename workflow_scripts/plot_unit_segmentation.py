"""Rule plot_unit_segmentation (rules/analysis.smk): the unit segmentation montage of one layer."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import plot_unit_segmentation

run_rule(plot_unit_segmentation, snakemake)  # noqa: F821 (injected by Snakemake)
