"""Figures of the semantic detectors (rule find_detectors): per layer, where its units'
top activations fall on the mean aligned face, with the template's region outlines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from traitlens.core.atomic import save_figure


def _colours(region_names: Sequence[str]) -> list[str]:
    from traitlens.faces.face_template import REGION_COLOURS

    spare = ["#f58231", "#911eb4", "#46f0f0", "#f032e6"]
    return [REGION_COLOURS.get(name, spare[i % len(spare)]) for i, name in enumerate(region_names)]


def plot_layer_histograms(
    layer: str,
    hist: np.ndarray,
    scores: np.ndarray,
    mean_face: np.ndarray,
    masks: np.ndarray,
    region_names: Sequence[str],
    path: str | Path,
) -> None:
    """The mean face with the summed histogram of all the layer's units as a heat
    overlay and the region outlines, then, per region, the histogram of the unit that
    scores highest for it (its number and score in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = _colours(region_names)
    size = masks.shape[-1]
    n_regions = len(region_names)
    fig, axes = plt.subplots(1, 1 + n_regions, figsize=(2.6 * (1 + n_regions), 3.0), dpi=110)

    def outlines(ax):
        for mask, colour in zip(masks, colours, strict=True):
            if mask.any():
                ax.contour(mask, levels=[0.5], colors=[colour], linewidths=0.9)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])

    total = hist.sum(axis=0)
    axes[0].imshow(mean_face, interpolation="bilinear")
    if total.max() > 0:
        axes[0].imshow(total / total.max(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    outlines(axes[0])
    axes[0].set_title(f"{layer}: all {len(hist)} units", fontsize=9)
    for r, name in enumerate(region_names):
        ax = axes[1 + r]
        if len(hist):
            unit = int(np.argmax(scores[:, r]))
            ax.imshow(mean_face, interpolation="bilinear", alpha=0.6)
            ax.imshow(hist[unit], cmap="jet", alpha=0.55)
            ax.set_title(f"{name}: #{unit} score {scores[unit, r]:.2f}", fontsize=9)
        outlines(ax)
    fig.suptitle(f"{layer}: where the units' top activations fall on the aligned face", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(fig, path)
