"""Rule summarise_qc (rules/extract.smk): extraction and face QC merged into qc/videos.tsv."""

from traitlens.core.errors import run_rule
from traitlens.faces.rules import summarise_qc

run_rule(summarise_qc, snakemake)  # noqa: F821 (injected by Snakemake)
