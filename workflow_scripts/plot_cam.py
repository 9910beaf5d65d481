"""Rule plot_cam (rules/analysis.smk): the top frames per trait with their CAM overlaid."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import plot_cam

run_rule(plot_cam, snakemake)  # noqa: F821 (injected by Snakemake)
