"""Rule export_fex (rules/aus.smk): one shard's AU table as py-feat's Fex CSV."""

from traitlens.aus.rules import export_fex
from traitlens.core.errors import run_rule

run_rule(export_fex, snakemake)  # noqa: F821 (injected by Snakemake)
