"""Rule validate_aus (rules/aus.smk): estimated vs planted AUs (demo data set)."""

from traitlens.core.errors import run_rule
from traitlens.demo.rules import validate_aus

run_rule(validate_aus, snakemake)  # noqa: F821 (injected by Snakemake)
