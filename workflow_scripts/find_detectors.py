"""Rule find_detectors (rules/analysis.smk): semantic detectors among the face model's units."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import find_detectors

run_rule(find_detectors, snakemake)  # noqa: F821 (injected by Snakemake)
