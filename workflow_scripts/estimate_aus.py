"""Rule estimate_aus (rules/aus.smk): AU intensities of one shard, per frame and per video."""

from traitlens.aus.rules import estimate_aus
from traitlens.core.errors import run_rule

run_rule(estimate_aus, snakemake)  # noqa: F821 (injected by Snakemake)
