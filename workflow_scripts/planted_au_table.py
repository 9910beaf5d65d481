"""Rule planted_au_table (rules/aus.smk): the AU tables' frames with the planted AU values."""

from traitlens.core.errors import run_rule
from traitlens.demo.rules import planted_au_table

run_rule(planted_au_table, snakemake)  # noqa: F821 (injected by Snakemake)
