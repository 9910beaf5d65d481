"""Resampling as matrices: bilinear upsampling of unit maps and area downsampling of masks.

A map (h, w) becomes ``A @ map @ B.T`` with A (size, h) and B (size, w): one matrix
product per axis, vectorised over frames and units, in numpy alone.
"""

from __future__ import annotations

import numpy as np


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float64 (n_out, n_in): 1-D bilinear resampling with align_corners False (torch's
    ``F.interpolate(mode="bilinear")``): output o samples input coordinate
    (o + 0.5) n_in / n_out - 0.5, clamped to the first and last sample."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(out, (np.arange(n_out), hi), frac)
    return out


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float64 (n_out, n_in): area averaging; output o averages the input span
    [o n_in / n_out, (o + 1) n_in / n_out), partial pixels weighted by their overlap."""
    edges = np.arange(n_out + 1) * n_in / n_out
    left, right = edges[:-1, None], edges[1:, None]
    pixel = np.arange(n_in)[None]
    overlap = np.clip(np.minimum(right, pixel + 1) - np.maximum(left, pixel), 0.0, None)
    return overlap / (n_in / n_out)


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """bool (R, size, size): each mask area-averaged to ``size`` and kept where > 0.5."""
    masks = np.asarray(masks, dtype=bool)
    ry, rx = area_matrix(masks.shape[1], size), area_matrix(masks.shape[2], size)
    return np.einsum("ah,rhw,bw->rab", ry, masks.astype(np.float64), rx) > 0.5


def upsample_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """float32 (..., size, size): bilinear upsampling (align_corners False) of the last
    two axes, as two matrix products."""
    maps = np.asarray(maps, dtype=np.float32)
    ry = bilinear_matrix(maps.shape[-2], size).astype(np.float32)
    rx = bilinear_matrix(maps.shape[-1], size).astype(np.float32)
    return ry @ maps @ rx.T
