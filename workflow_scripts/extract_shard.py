"""Rule extract_shard (rules/extract.smk): frames and audio features of one shard, its QC table."""

from traitlens.core.errors import run_rule
from traitlens.extract.rules import extract_shard

run_rule(extract_shard, snakemake)  # noqa: F821 (injected by Snakemake)
