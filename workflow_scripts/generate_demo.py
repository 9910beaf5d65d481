"""Rule generate_demo (rules/data.smk): the planted-signal demo data set."""

from traitlens.core.errors import run_rule
from traitlens.demo.rules import generate_demo

run_rule(generate_demo, snakemake)  # noqa: F821 (injected by Snakemake)
