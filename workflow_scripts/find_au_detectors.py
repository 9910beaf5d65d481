"""Rule find_au_detectors (rules/analysis.smk): AU detectors among the face model's units."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import find_au_detectors

run_rule(find_au_detectors, snakemake)  # noqa: F821 (injected by Snakemake)
