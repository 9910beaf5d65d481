"""Rule build_manifest (rules/data.smk): the videos and labels joined into manifest.tsv."""

from traitlens.core.errors import run_rule
from traitlens.ingest.rules import build_manifest

run_rule(build_manifest, snakemake)  # noqa: F821 (injected by Snakemake)
