"""Rule calibrate_aus (rules/aus.smk): the person baseline subtracted over every shard."""

from traitlens.aus.rules import calibrate_aus
from traitlens.core.errors import run_rule

run_rule(calibrate_aus, snakemake)  # noqa: F821 (injected by Snakemake)
