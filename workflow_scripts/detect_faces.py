"""Rule detect_faces (rules/faces.smk): faces (detection, landmarks, aligned crops) of one shard."""

from traitlens.core.errors import run_rule
from traitlens.faces.rules import detect_faces

run_rule(detect_faces, snakemake)  # noqa: F821 (injected by Snakemake)
