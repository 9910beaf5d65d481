"""The paired model comparisons as a figure (rule plot_comparisons): the paper's two claims,
face - img and img+audio - img, as differences of mean accuracy with their bootstrap
confidence intervals, one row per claim and split, read from ``tables/comparisons.tsv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import save_figure
from traitlens.core.tables import read_table
from traitlens.evaluation.accuracy_table import COMPARISON_COLUMNS


def read_comparisons(path: str | Path) -> pd.DataFrame:
    """tables/comparisons.tsv; UserError naming the file when it is not one."""
    return read_table(path, "model comparisons", "evaluate_models", COMPARISON_COLUMNS)


def plot_comparisons(comparisons: pd.DataFrame, path: str | Path, confidence: float) -> None:
    """Forest plot: each row a claim on a split, the difference as a dot, its CI as a bar,
    a line at 0 (no difference); a CI clear of 0 is drawn solid, one across it hollow.
    Each row is labelled with its p-value and the number of persons resampled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(comparisons["split"]))
    claims = list(dict.fromkeys(comparisons["comparison"]))
    colours = {split: plt.get_cmap("tab10")(i) for i, split in enumerate(splits)}
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.45 * max(len(comparisons), 1)))
    labels, y = [], 0
    for claim in claims:
        for split in splits:
            row = comparisons[
                (comparisons["comparison"] == claim) & (comparisons["split"] == split)
            ]
            if row.empty:
                continue
            r = row.iloc[0]
            low, high, diff = (
                float(r["ci_low"]),
                float(r["ci_high"]),
                float(r["diff_mean_accuracy"]),
            )
            clear = low > 0 or high < 0
            ax.plot([low, high], [y, y], color=colours[split], lw=2.5, solid_capstyle="butt")
            ax.plot(diff, y, "o", ms=7, color=colours[split],
                    markerfacecolor=colours[split] if clear else "white")  # fmt: skip
            persons = int(r["n_groups"])
            ax.annotate(f"p = {float(r['p_value']):.3g}, {persons} person{'s' * (persons != 1)}",
                        (high, y), xytext=(6, 0), textcoords="offset points", va="center",
                        fontsize=8)  # fmt: skip
            labels.append(f"{claim}\n({split})")
            y += 1
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=9)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # the first claim on top
    spread = comparisons[["ci_low", "ci_high"]].abs().to_numpy(dtype=float)
    reach = float(np.nanmax(spread, initial=0.0)) or 0.01
    ax.set_xlim(-1.15 * reach, 1.9 * reach)  # room on the right for the labels
    ax.set_xlabel("difference of mean accuracy (1 - MAE); > 0: the first model is better")
    ax.set_title(
        f"The paper's claims as paired comparisons, {confidence * 100:g}% bootstrap CI over "
        "persons (filled: CI clear of 0)",
        fontsize=10,
    )
    ax.grid(axis="x", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
