"""Extraction (rules/extract.smk): probe videos, decode frames and audio per shard."""
