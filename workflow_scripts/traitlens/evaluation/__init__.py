"""Evaluation (rules/train.smk, evaluate_models): accuracy tables with bootstrap intervals."""
