"""The AU-emergence nulls as a figure (rule plot_emergence_null), from
``tables/au_emergence_null.tsv``: how often each test fires on data with no association,
against the alpha it is run at. Three nulls, per AU and pooled:

- the paper's p with frames shuffled over the whole data set (frames independent);
- the paper's p with frames shuffled only within their video (the frames of a video stay
  together, as they are in the real data);
- the verdict (the cluster-aware p) on AU tracks moved whole between videos.

A test that is calibrated fires at about alpha; each rate carries its Wilson interval
(``traitlens.evaluation.proportions``) over the null draws it counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import save_figure
from traitlens.core.tables import read_table
from traitlens.evaluation.proportions import wilson_interval
from traitlens.interpret.au_emergence import NULL_COLUMNS

POOLED = "all"
# (column of the rate, column of its draws per AU, label); the last two are optional
NULLS = (
    ("false_positive_rate", "n_permutations", "paper's p, frames shuffled over the data set"),
    ("false_positive_rate_within_video", "n_permutations",
     "paper's p, frames shuffled within their video"),
    ("cluster_false_positive_rate", "cluster_null_draws",
     "verdict, AU tracks moved whole between videos"),
)  # fmt: skip


def read_null(path: str | Path) -> pd.DataFrame:
    """tables/au_emergence_null.tsv; UserError naming the file when it is not one."""
    return read_table(path, "AU emergence null", "find_au_detectors", NULL_COLUMNS, {"au": str})


def null_rates(null: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Long form, one row per AU (the pooled row last) and null present in the table: au,
    null, rate, n (null draws counted), low, high. AUs without a rate (constant AUs are not
    tested) are left out. The pooled verdict's draws are its draws per AU times the AUs
    tested (``cluster_null_rates`` pools that way)."""
    rows = []
    per_au = null[null["au"] != POOLED]
    for column, draws, label in NULLS:
        if column not in null:
            continue
        n_tested = int(per_au[column].notna().sum())
        for r in null.itertuples(index=False):
            rate = getattr(r, column)
            if pd.isna(rate):
                continue
            n = int(getattr(r, draws))
            if column == "cluster_false_positive_rate" and r.au == POOLED:
                n *= n_tested
            low, high = wilson_interval(int(round(rate * n)), n, confidence)
            rows.append({"au": r.au, "null": label, "rate": float(rate), "n": n,
                         "low": low, "high": high})  # fmt: skip
    return pd.DataFrame(rows, columns=["au", "null", "rate", "n", "low", "high"])


def plot_emergence_null(
    null: pd.DataFrame, alpha: float, path: str | Path, confidence: float = 0.95
) -> None:
    """One row per AU (the pooled rate at the bottom), a dot per null with its interval, on
    a scale linear below alpha / 10 and logarithmic above, so 0, alpha and 1 all show; a
    dashed line at alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = null_rates(null, confidence)
    aus = list(dict.fromkeys(null["au"]))
    aus = [au for au in aus if au != POOLED] + ([POOLED] if POOLED in aus else [])
    labels = list(dict.fromkeys(rates["null"]))
    colours = dict(zip(labels, ("tab:blue", "tab:orange", "tab:green"), strict=False))
    fig, ax = plt.subplots(figsize=(8.5, 1.9 + 0.3 * len(aus)))
    for k, label in enumerate(labels):
        part = rates[rates["null"] == label].set_index("au")
        offset = (k - (len(labels) - 1) / 2) * 0.22
        y = np.array([aus.index(au) for au in part.index]) + offset
        ax.errorbar(part["rate"], y, xerr=[part["rate"] - part["low"], part["high"] - part["rate"]],
                    fmt="o", ms=4, color=colours[label], ecolor=colours[label], elinewidth=1,
                    capsize=2, label=f"{label} (n = {int(part['n'].iloc[0])} per AU)")  # fmt: skip
    for y, au in enumerate(aus):
        if au not in set(rates["au"]):
            ax.text(0, y, "  not tested (constant over the frames)", va="center", fontsize=7,
                    color="0.4")  # fmt: skip
    ax.axvline(alpha, color="k", ls="--", lw=0.8, label=f"alpha = {alpha:g}")
    ax.set_xscale("symlog", linthresh=alpha / 10, linscale=0.5)
    ax.set_xlim(-alpha / 40, 1.05)
    ax.set_yticks(np.arange(len(aus)), [au if au != POOLED else "all AUs" for au in aus],
                  fontsize=8)  # fmt: skip
    ax.set_ylim(len(aus) - 0.5, -0.5)
    if POOLED in aus:
        ax.axhline(len(aus) - 1.5, color="0.7", lw=0.6)
    ax.set_xlabel(
        f"false-positive rate under the null, {confidence * 100:g}% Wilson interval "
        f"(linear below {alpha / 10:g}, log above)"
    )
    ax.set_title("AU emergence: how often each test fires when nothing is there", fontsize=10)
    ax.grid(axis="x", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    handles, texts = ax.get_legend_handles_labels()
    fig.legend(handles, texts, loc="lower center", ncol=2, fontsize=7, frameon=False)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, 0.55 / height, 1, 1))  # the legend's two rows below
    save_figure(fig, path, dpi=110)
