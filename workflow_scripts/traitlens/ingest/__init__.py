"""Ingest (rules/data.smk): where the videos are, the labels, the manifest and the shards."""
