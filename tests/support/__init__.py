"""Helpers shared by the tests (tests import these, never one another): media files made
with ffmpeg, pickles, face photos, bad inputs, activation dumps, clustered frames (persons
x videos x frames) for the emergence statistics, a planted-truth demo in miniature (truth,
frames and CAM files) for the scoring, workflow runs and configs, the SLURM test cluster,
module import names, what a rule's code imports (read function by function), the conda
envs against the venv, and the test tiers plugin."""
