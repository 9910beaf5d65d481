"""Rule compute_cam (rules/analysis.smk): class activation maps of one CAM source."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import compute_cam

run_rule(compute_cam, snakemake)  # noqa: F821 (injected by Snakemake)
