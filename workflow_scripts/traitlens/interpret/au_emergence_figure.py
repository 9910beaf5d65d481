"""The AU-detector emergence figure (rule find_au_detectors): -log10 p of each AU's best
unit, and the permutation null's false-positive rates, from the two tables. The decoy
rows (``<AU>_decoy``) are negative controls and are left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.interpret.au_emergence import DECOY_SUFFIX


def plot_emergence(table: pd.DataFrame, null: pd.DataFrame, alpha: float, path: str | Path) -> None:
    """Top: the paper's -log10 p per AU, the alpha line, each bar annotated with its best
    unit (layer#unit) and I_max; with the cluster-aware columns, -log10 p_perm as dots and
    the bars coloured by the verdict (``significant``), else by p < alpha. Bottom: the
    null's false-positive rate per AU against alpha."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from traitlens.core.atomic import save_figure

    table = table[~table["au"].astype(str).str.endswith(DECOY_SUFFIX)]
    aus = list(table["au"])
    x = np.arange(len(aus))
    height = -table["log10_p"].to_numpy(dtype=float)
    verdict = "significant" in table and table["p_perm"].notna().any()
    significant = (
        table["significant"].to_numpy(dtype=bool)
        if verdict
        else table["log10_p"].to_numpy(dtype=float) < np.log10(alpha)
    )
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(6.0, 0.55 * len(aus) + 2), 7.0), height_ratios=[2, 1], sharex=True
    )
    top.bar(x, height, color=np.where(significant, "tab:red", "tab:gray"))
    top.axhline(-np.log10(alpha), color="k", ls="--", lw=0.8, label=f"alpha = {alpha:g}")
    if verdict:
        perm_height = -np.log10(table["p_perm"].to_numpy(dtype=float))
        top.plot(x, perm_height, "o", color="k", ms=4,
                 label="cluster-aware p (whole videos moved within person)")  # fmt: skip
    else:
        perm_height = np.zeros(0)
    tallest = float(np.nanmax(np.concatenate([height, perm_height]), initial=0.0))
    ceiling = max(tallest, -np.log10(alpha)) * 1.25 + 0.5
    top.set_ylim(0, ceiling)
    for xi, row, h in zip(x, table.itertuples(), height, strict=True):
        label = "—" if int(row.unit) < 0 else f"{row.layer}#{row.unit}\nI={row.i_max}"
        top.annotate(label, (xi, h), xytext=(0, 2), textcoords="offset points",
                     ha="center", va="bottom", fontsize=6, rotation=90)  # fmt: skip
    n0 = table.iloc[0] if len(table) else None
    detail = f" (N = {n0['n']}, F = {n0['f']}, U = {n0['u']})" if n0 is not None else ""
    top.set_ylabel("-log10 p (corrected for U units)")
    top.set_title(f"AU detector emergence: best unit per AU{detail}", fontsize=10)
    from matplotlib.patches import Patch

    handles = [
        *top.get_legend_handles_labels()[0],
        Patch(color="tab:red", label="significant (BH q < alpha)" if verdict else "p < alpha"),
        Patch(color="tab:gray", label="not significant"),
    ]
    top.legend(handles=handles, loc="upper right", fontsize=8)
    per_au = null.set_index("au")["false_positive_rate"].reindex(aus).to_numpy(dtype=float)
    within_col = "false_positive_rate_within_video"
    if within_col in null:
        within = null.set_index("au")[within_col].reindex(aus).to_numpy(dtype=float)
        bottom.bar(x - 0.2, np.nan_to_num(per_au), width=0.4, color="tab:blue",
                   label="frames shuffled over the data set")  # fmt: skip
        bottom.bar(x + 0.2, np.nan_to_num(within), width=0.4, color="tab:orange",
                   label="frames shuffled within their video")  # fmt: skip
        per_au = np.fmax(per_au, within)
    else:
        bottom.bar(x, np.nan_to_num(per_au), color="tab:blue")
    bottom.axhline(alpha, color="k", ls="--", lw=0.8, label=f"alpha = {alpha:g}")
    pooled = null.loc[null["au"] == "all", "false_positive_rate"]
    pooled_text = f"{float(pooled.iloc[0]):.3f}" if len(pooled) else "n/a"
    bottom.set_ylabel("false-positive rate")
    bottom.set_title(f"permutation null (all AUs pooled: {pooled_text})", fontsize=10)
    bottom.set_ylim(0, min(1.05, max(2.5 * alpha, float(np.nanmax(per_au, initial=0.0)) * 1.2)))
    bottom.legend(loc="upper right", fontsize=8)
    bottom.set_xticks(x, aus, rotation=45, ha="right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
