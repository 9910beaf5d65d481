"""Rule report_qc (rules/analysis.smk): the report's QC section (counts, figure, page)."""

from traitlens.core.errors import run_rule
from traitlens.faces.rules import report_qc

run_rule(report_qc, snakemake)  # noqa: F821 (injected by Snakemake)
