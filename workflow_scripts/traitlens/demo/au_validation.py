"""Score estimated AUs against the planted truth of the demo data set.

``validation/aus.tsv``: one row per py-feat AU of the ground truth: ``au``, ``planted``
(true/false), ``pearson_r`` (estimate vs planted intensity over the frames both have),
``n_frames``, then ``video_mean_r`` (the same r between per-video means: the AU
regression of docs/method.md uses them), ``cross_talk_r`` (the largest |r| between this
AU's estimate and another AU's planted intensity: for an unplanted AU, how much
planted signal leaks into it), ``estimate_mean`` and ``estimate_sd`` (an unplanted AU
should stay flat).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.aus.estimate_aus import PYFEAT_AUS, read_frame_table
from traitlens.core.errors import UserError
from traitlens.core.tables import read_table

VALIDATION_COLUMNS = (
    "au",
    "planted",
    "pearson_r",
    "n_frames",
    "video_mean_r",
    "cross_talk_r",
    "estimate_mean",
    "estimate_sd",
)
TRUTH_FILE = "frames.tsv"
PLANTED_FILE = "planted.json"


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN when either side is constant or fewer than 3 pairs."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) < 3:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / den) if den > 1e-12 else float("nan")


def load_truth(ground_truth_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """(per-frame planted intensities, the planted AU names) from the ground truth."""
    folder = Path(ground_truth_dir)
    frames_path, planted_path = folder / TRUTH_FILE, folder / PLANTED_FILE
    for path in (frames_path, planted_path):
        if not path.is_file():
            raise UserError(
                f"{path}: missing; AU validation needs the demo's ground truth "
                "(dataset.format demo writes it)"
            )
    required = ("video_id", "frame_index", *PYFEAT_AUS)
    truth = read_table(
        frames_path, "ground-truth frames", "generate_demo", required, {"video_id": str}
    )
    try:
        planted = sorted(json.loads(planted_path.read_text())["planted_aus"])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{planted_path}: no planted_aus object ({err})") from None
    return truth, planted


def join_truth(estimates: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Successful estimated frames joined with their planted values (suffix _true)."""
    used = estimates[estimates["success"]]
    truth_cols = ["video_id", "frame_index", *PYFEAT_AUS]
    return used.merge(
        truth[truth_cols], on=["video_id", "frame_index"], how="inner", suffixes=("", "_true")
    )


def planted_au_table(estimates: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """An AU frame table (the AU tables' columns) whose values are the PLANTED
    intensities, on exactly the frames the estimates cover (a frame whose face was not
    found keeps success false): the emergence test run on it asks whether units follow
    the AUs themselves, apart from how well they were estimated."""
    from traitlens.aus.estimate_aus import AU_COLUMNS, FRAME_COLUMNS, with_au45

    keys = estimates[["video_id", "frame_index", "success"]]
    joined = keys.merge(
        truth[["video_id", "frame_index", *PYFEAT_AUS]],
        on=["video_id", "frame_index"],
        how="left",
        indicator=True,
    )
    lost = joined["success"].astype(bool) & joined["_merge"].eq("left_only")
    if lost.any():
        first = joined[lost].iloc[0]
        raise UserError(
            f"ground truth {TRUTH_FILE}: no row for frame ({first['video_id']}, "
            f"{first['frame_index']}) of the AU tables ({int(lost.sum())} frames); the AU "
            "tables and the ground truth are from different demo data sets"
        )
    values = with_au45(joined[list(PYFEAT_AUS)].to_numpy(dtype=np.float64), PYFEAT_AUS)
    table = pd.DataFrame(values, columns=list(AU_COLUMNS))
    table.insert(0, "success", joined["success"].astype(bool).to_numpy())
    table.insert(0, "frame_index", joined["frame_index"].to_numpy())
    table.insert(0, "video_id", joined["video_id"].to_numpy())
    table.loc[~table["success"], list(AU_COLUMNS)] = np.nan
    return table[list(FRAME_COLUMNS)]


def validation_table(joined: pd.DataFrame, planted: Sequence[str]) -> pd.DataFrame:
    """Per AU: r with its own planted intensity, cross-talk, spread (see module doc)."""
    rows = []
    per_video = joined.groupby("video_id").mean(numeric_only=True)
    for au in PYFEAT_AUS:
        both = joined[[au, f"{au}_true"]].dropna()
        est = joined[au]
        others = [
            abs(pearson(joined[au], joined[f"{p}_true"]))
            for p in planted
            if p != au and joined[au].notna().all()
        ]
        others = [r for r in others if np.isfinite(r)]
        rows.append(
            {
                "au": au,
                "planted": au in planted,
                "pearson_r": pearson(both[au], both[f"{au}_true"]),
                "n_frames": len(both),
                "video_mean_r": pearson(per_video[au], per_video[f"{au}_true"]),
                "cross_talk_r": max(others) if others else float("nan"),
                "estimate_mean": est.mean(),
                "estimate_sd": est.std(ddof=0),
            }
        )
    return pd.DataFrame(rows, columns=list(VALIDATION_COLUMNS))


def validate(
    au_tables: Sequence[str | Path], ground_truth_dir: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(validation table, joined frames, planted AUs) from the shards' AU tables."""
    estimates = pd.concat([read_frame_table(p) for p in au_tables], ignore_index=True)
    truth, planted = load_truth(ground_truth_dir)
    joined = join_truth(estimates, truth)
    if joined.empty:
        raise UserError(
            f"no estimated frame matches {Path(ground_truth_dir) / TRUTH_FILE} on "
            "(video_id, frame_index): is this the ground truth of the same data set?"
        )
    return validation_table(joined, planted), joined, planted


def scatter_figure(
    joined: pd.DataFrame, table: pd.DataFrame, planted: Sequence[str], path: str | Path
) -> None:
    """One panel per planted AU: planted (x) vs estimated (y) intensity per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from traitlens.core.atomic import save_figure

    n = max(len(planted), 1)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    r_of = dict(zip(table["au"], table["pearson_r"], strict=True))
    for ax, au in zip(axes[0], planted, strict=False):
        x, y = joined[f"{au}_true"], joined[au]
        ax.scatter(x, y, s=6, alpha=0.4, edgecolors="none")
        hi = max(float(np.nanmax(x)), float(np.nanmax(y)), 1e-3) * 1.05
        ax.plot([0, hi], [0, hi], color="0.6", lw=0.8, ls="--")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_title(f"{au}  r = {r_of[au]:.2f}  (n = {len(x)})", fontsize=10)
        ax.set_xlabel("planted intensity")
        ax.set_ylabel("estimated intensity")
    fig.suptitle("AU validation: planted vs estimated, per frame", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
