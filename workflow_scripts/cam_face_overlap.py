"""Rule cam_face_overlap (rules/analysis.smk): how much of each CAM lies on the detected face."""

from traitlens.core.errors import run_rule
from traitlens.interpret.rules import cam_face_overlap

run_rule(cam_face_overlap, snakemake)  # noqa: F821 (injected by Snakemake)
