"""Interpretability (rules/activations.smk, rules/analysis.smk).

CAM, activation dumps, unit segmentation, semantic detectors, AU-detector emergence.
"""
