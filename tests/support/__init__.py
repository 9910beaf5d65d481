"""Helpers shared by the tests (tests import these, never one another): media files made
with ffmpeg, pickles, face photos, bad inputs, activation dumps, workflow runs and configs,
the SLURM test cluster, and the test tiers plugin."""
