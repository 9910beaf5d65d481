"""Figures of the class activation maps (rules plot_cam and cam_face_overlap): the
frames with the highest prediction of each trait with their map overlaid, and the
histogram of the maps' overlap with the face. Read from the CAM files
(:mod:`traitlens.interpret.cam_file`); no PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import save_figure
from traitlens.ingest.labels import BIG_FIVE as TRAIT_ORDER
from traitlens.interpret.cam_face_overlap import upsample_map
from traitlens.interpret.cam_file import RULE as CAM_RULE
from traitlens.interpret.cam_file import read_cam_file
from traitlens.interpret.frame_refs import read_by_shard_row, shard_lookup


def _display(up: np.ndarray) -> np.ndarray:
    """A map scaled to 0..1 by its own min and max, as Zhou et al. show CAMs."""
    low, high = float(up.min()), float(up.max())
    return (up - low) / (high - low) if high > low else np.zeros_like(up)


def cam_grid_figure(
    images: np.ndarray,
    maps: np.ndarray,
    scores: np.ndarray,
    title: str,
    path: str | Path,
    alpha: float,
    columns: int = 5,
) -> None:
    """Grid of the images (uint8 K x H x W x 3) with their maps (K x h x w) upsampled to
    the image and overlaid as a jet heat map (each scaled by its own min and max), each
    tile titled with its predicted score; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(images)
    cols = max(1, min(columns, k))
    rows = max(1, math.ceil(k / cols))
    height, width = (images.shape[1], images.shape[2]) if k else (1, 1)
    tile = 2.2
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * tile * max(1.0, width / height), rows * tile + 0.6),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        ax.imshow(images[i])
        heat = _display(upsample_map(maps[i], height, width))
        ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(f"{scores[i]:.3f}", fontsize=9)
    if k == 0:
        axes.flat[0].text(0.5, 0.5, "no frames", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def overlap_histogram(table: pd.DataFrame, min_overlap: float, path: str | Path) -> None:
    """Histogram of the face overlap (scored rows, all traits) per source, a line at
    ``min_overlap`` and the share at or above it in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(0.0, 1.0, 21)
    for source, rows in table.groupby("source", sort=True):
        values = rows["overlap"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        share = float(np.mean(values >= min_overlap)) if len(values) else float("nan")
        ax.hist(
            values,
            bins=bins,
            histtype="step",
            linewidth=1.8,
            label=f"{source}: {share:.1%} >= {min_overlap:g} (n={len(values)})",
        )
    ax.axvline(min_overlap, color="k", linestyle="--", linewidth=1)
    ax.set(
        xlabel="|face box AND binarised map| / |binarised map|",
        ylabel="frame-trait pairs",
        title="Share of the highlighted region on the detected face",
        xlim=(0, 1),
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def plot_cam_figures(
    cam_path: str | Path,
    data: Sequence[str | Path],
    out_paths: Sequence[str | Path],
    n_frames: int,
    alpha: float,
) -> None:
    """One grid per trait (``out_paths`` in TRAIT_ORDER): the ``n_frames`` frames with
    the highest prediction of the trait (ties: earlier frame first), map overlaid."""
    cam = read_cam_file(cam_path)
    if len(out_paths) != len(TRAIT_ORDER):
        raise ValueError(f"{len(out_paths)} figure paths for {len(TRAIT_ORDER)} traits")
    kind = cam["kind"]
    from traitlens.models.pixel_reader import PixelReader

    lookup = shard_lookup(cam["shard_file"], data, f"{kind} shard", cam_path, CAM_RULE)
    reader = PixelReader(kind, [str(p) for p in data])
    try:
        for t, (trait, out) in enumerate(zip(TRAIT_ORDER, out_paths, strict=True)):
            top = np.argsort(-cam["predictions"][:, t], kind="stable")[:n_frames]
            images = (
                read_by_shard_row(reader, lookup, cam["shard_file"][top], cam["row"][top])
                if len(top)
                else np.zeros((0, 1, 1, 3), np.uint8)
            )
            title = (
                f"{cam['source']}: top {len(top)} {cam['split']} frames by predicted {trait} "
                f"({cam['method']}, {cam['layer']})"
            )
            cam_grid_figure(
                images, cam["maps"][top, t], cam["predictions"][top, t], title, out, alpha
            )
    finally:
        reader.close()
