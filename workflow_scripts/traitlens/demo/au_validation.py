"""Score estimated AUs against the planted truth of the demo data set.

``validation/aus.tsv``: one row per py-feat AU of the ground truth: ``au``, ``planted``
(true/false), ``pearson_r`` (estimate vs planted intensity over the frames both have),
``n_frames``, then ``video_mean_r`` (the same r between per-video means: the AU
regression of docs/method.md uses them), ``cross_talk_r`` (the largest |r| between this
AU's estimate and another AU's planted intensity: for an unplanted AU, how much
planted signal leaks into it), ``estimate_mean`` and ``estimate_sd`` (an unplanted AU
should stay flat), ``shuffled_r`` (the negative control of ``pearson_r``: each video's
estimates against the planted intensities of the same frames of another person's video;
near 0 unless the estimates follow something every face shares) and
``uncalibrated_r`` (``pearson_r`` of the estimates before the person baseline, with
``aus.baseline: person``; empty otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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
    "shuffled_r",
    "uncalibrated_r",
)
TRUTH_FILE = "frames.tsv"
VIDEOS_FILE = "videos.tsv"
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


def partner_videos(persons: Mapping[str, str]) -> dict[str, str]:
    """Each video paired with a video of the next person (people in sorted order, the
    k-th video with the next person's k-th, cyclically): no video keeps its person. Empty
    with fewer than two people."""
    by_person: dict[str, list[str]] = {}
    for video, person in sorted(persons.items()):
        by_person.setdefault(person, []).append(video)
    people = sorted(by_person)
    if len(people) < 2:
        return {}
    pairs = {}
    for i, person in enumerate(people):
        others = by_person[people[(i + 1) % len(people)]]
        for k, video in enumerate(by_person[person]):
            pairs[video] = others[k % len(others)]
    return pairs


def shuffled_join(joined: pd.DataFrame, truth: pd.DataFrame, pairs: Mapping[str, str]):
    """The estimates of ``joined`` beside the planted values (suffix _true) of the same
    frame index in each video's partner video."""
    est = joined[["video_id", "frame_index", *PYFEAT_AUS]].copy()
    est["partner"] = est["video_id"].map(pairs)
    partner_truth = truth[["video_id", "frame_index", *PYFEAT_AUS]].rename(
        columns={"video_id": "partner", **{au: f"{au}_true" for au in PYFEAT_AUS}}
    )
    return est.dropna(subset=["partner"]).merge(partner_truth, on=["partner", "frame_index"])


def validation_table(
    joined: pd.DataFrame,
    planted: Sequence[str],
    shuffled: pd.DataFrame | None = None,
    uncalibrated: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per AU: r with its own planted intensity, cross-talk, spread and the controls (see
    module doc); ``shuffled`` from :func:`shuffled_join`, ``uncalibrated`` the estimates
    before the person baseline joined like ``joined``."""

    def r_of(table: pd.DataFrame | None, au: str) -> float:
        if table is None:
            return float("nan")
        both = table[[au, f"{au}_true"]].dropna()
        return pearson(both[au], both[f"{au}_true"])

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
                "pearson_r": r_of(joined, au),
                "n_frames": len(both),
                "video_mean_r": pearson(per_video[au], per_video[f"{au}_true"]),
                "cross_talk_r": max(others) if others else float("nan"),
                "estimate_mean": est.mean(),
                "estimate_sd": est.std(ddof=0),
                "shuffled_r": r_of(shuffled, au),
                "uncalibrated_r": r_of(uncalibrated, au),
            }
        )
    return pd.DataFrame(rows, columns=list(VALIDATION_COLUMNS))


def validate(
    au_tables: Sequence[str | Path],
    ground_truth_dir: str | Path,
    uncalibrated_tables: Sequence[str | Path] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(validation table, joined frames, planted AUs) from the shards' AU tables (and,
    with the person baseline, the tables before it)."""
    truth, planted = load_truth(ground_truth_dir)
    joined = _joined(au_tables, truth, ground_truth_dir)
    uncalibrated = None
    if uncalibrated_tables:
        uncalibrated = _joined(uncalibrated_tables, truth, ground_truth_dir)
    persons = read_table(
        Path(ground_truth_dir) / VIDEOS_FILE,
        "ground-truth videos",
        "generate_demo",
        ("video_id", "user_id"),
        {"video_id": str, "user_id": str},
    )
    pairs = partner_videos(dict(zip(persons["video_id"], persons["user_id"], strict=True)))
    shuffled = shuffled_join(joined, truth, pairs)
    return validation_table(joined, planted, shuffled, uncalibrated), joined, planted


def _joined(au_tables: Sequence[str | Path], truth: pd.DataFrame, ground_truth_dir) -> pd.DataFrame:
    estimates = pd.concat([read_frame_table(p) for p in au_tables], ignore_index=True)
    joined = join_truth(estimates, truth)
    if joined.empty:
        raise UserError(
            f"no estimated frame matches {Path(ground_truth_dir) / TRUTH_FILE} on "
            "(video_id, frame_index): is this the ground truth of the same data set?"
        )
    return joined


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
