"""Rule build_face_template (rules/faces.smk): the semantic face template and its figure."""

from traitlens.core.errors import run_rule
from traitlens.faces.rules import build_face_template

run_rule(build_face_template, snakemake)  # noqa: F821 (injected by Snakemake)
