"""The study's accuracy table: every model scored on the same videos, with bootstrap CIs.

:func:`evaluate` turns the labels and the per-model prediction tables into three tables
(accuracy per model/split, long-form metrics per trait, paired comparisons of the paper's
two claims); :func:`write_outputs` writes them as TSV, a Markdown summary and a bar figure.

Choices made here:
- ``train_mean`` is a baseline computed here: every video is predicted with the mean of
  each trait over the *train* split's labels.
- A video a model has no prediction for (no face in any frame, no audio) is scored with
  that train-mean prediction, so all models are scored on the same videos and stay
  comparable; ``n_fallback`` counts such videos per model and split.
- Every bootstrap on a split uses the same seed, hence the same resampled videos for
  every model (see :mod:`traitlens.evaluation.bootstrap`).
- The bootstrap resamples groups (the manifest's ``group``: the person), each with all
  of its videos in the split; ``n_groups`` counts them. Without groups, or when every
  group is one video, it resamples videos and ``n_groups`` equals ``n_videos``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import atomic_path, save_figure, write_text_atomic
from traitlens.core.errors import UserError
from traitlens.evaluation.bootstrap import (
    bootstrap_mean_accuracy,
    count_groups,
    paired_bootstrap,
)
from traitlens.evaluation.metrics import METRICS, trait_metrics
from traitlens.ingest.labels import BIG_FIVE
from traitlens.models.predictions import FLOAT_FORMAT, SPLITS

MODELS = ("img+audio", "img", "face", "audio", "aus")
BASELINE = "train_mean"
# The paper's two claims: faces beat whole frames; audio adds to the image model.
COMPARISONS = (("face", "img"), ("img+audio", "img"))
DEFAULT_SPLITS = ("validation", "test")

ACCURACY_COLUMNS = (
    "model",
    "split",
    "n_videos",
    "n_groups",
    "n_fallback",
    "mean",
    "mean_ci_low",
    "mean_ci_high",
    *BIG_FIVE,
    "pearson_r",
    "ccc",
    "r2",
)
METRICS_COLUMNS = ("model", "split", "trait", *METRICS)
COMPARISON_COLUMNS = (
    "comparison",
    "split",
    "diff_mean_accuracy",
    "ci_low",
    "ci_high",
    "p_value",
    "n_videos",
    "n_groups",
    "n_boot",
)


@dataclass(frozen=True)
class Evaluation:
    """The evaluation's tables and the bootstrap settings that produced them."""

    accuracy: pd.DataFrame
    metrics: pd.DataFrame
    comparisons: pd.DataFrame
    n_boot: int
    confidence: float
    seed: int


def _check_labels(labels: pd.DataFrame, splits: Sequence[str], source: str) -> None:
    dupes = labels["video_id"][labels["video_id"].duplicated()].unique()
    if len(dupes):
        raise UserError(
            f"{source}: video id(s) listed twice ({', '.join(dupes[:5])}); rebuild the manifest"
        )
    for split in ("train", *splits):
        rows = labels[labels["split"] == split]
        if rows.empty:
            need = "the train-mean baseline" if split == "train" else "the evaluation"
            raise UserError(
                f"{source}: no video of split {split!r}, which {need} needs; check the "
                "data set's split assignment or leave the split out of the evaluation's splits"
            )
        if not np.isfinite(rows[list(BIG_FIVE)].to_numpy(dtype=float)).all():
            raise UserError(
                f"{source}: missing or non-finite trait labels in split {split!r}; every "
                "evaluated video (and every train video) needs all five labels"
            )


def train_mean(labels: pd.DataFrame) -> np.ndarray:
    """The baseline prediction: each trait's mean over the train split's labels, (5,)."""
    return labels.loc[labels["split"] == "train", list(BIG_FIVE)].to_numpy(float).mean(axis=0)


def _check_predictions(table: pd.DataFrame, labels: pd.DataFrame, source: str) -> None:
    """UserError naming ``source`` for duplicate, unknown or re-split videos."""
    redo = f"delete {source} and rerun snakemake so that it is rebuilt from the current manifest"
    dupes = table["video_id"][table["video_id"].duplicated()].unique()
    if len(dupes):
        raise UserError(f"{source}: video id(s) predicted twice ({', '.join(dupes[:5])}); {redo}")
    split_of = labels.set_index("video_id")["split"]
    unknown = table.loc[~table["video_id"].isin(split_of.index), "video_id"]
    if len(unknown):
        raise UserError(
            f"{source}: {len(unknown)} prediction(s) for video(s) not in the labels "
            f"({', '.join(unknown[:5])}); the predictions belong to another data set or an "
            f"older manifest: {redo}"
        )
    moved = table.loc[table["split"].to_numpy() != split_of[table["video_id"]].to_numpy()]
    if len(moved):
        raise UserError(
            f"{source}: {len(moved)} video(s) predicted under another split than the labels "
            f"give ({', '.join(moved['video_id'][:5])}); {redo}"
        )


def _split_groups(truth: pd.DataFrame, groups: Mapping[str, str] | None, source: str) -> np.ndarray:
    """The group of each video of ``truth`` (its own id when ``groups`` is None)."""
    if groups is None:
        return truth["video_id"].to_numpy(dtype=object)
    of = truth["video_id"].map(groups)
    missing = truth.loc[of.isna(), "video_id"]
    if len(missing):
        raise UserError(
            f"{source}: {len(missing)} video(s) without a group ({', '.join(missing[:5])}); "
            "rebuild the manifest"
        )
    return of.astype(str).to_numpy(dtype=object)


def _scored(
    table: pd.DataFrame, video_ids: pd.Series, fallback: np.ndarray
) -> tuple[np.ndarray, int]:
    """Predictions (n, 5) in ``video_ids`` order, train mean where missing; and how many."""
    pred = table.set_index("video_id").reindex(video_ids)[list(BIG_FIVE)].to_numpy(float)
    missing = np.isnan(pred).any(axis=1)
    pred[missing] = fallback
    return pred, int(missing.sum())


def evaluate(
    labels: pd.DataFrame,
    predictions_by_model: Mapping[str, pd.DataFrame],
    splits: Sequence[str] = DEFAULT_SPLITS,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    sources: Mapping[str, str | Path] | None = None,
    labels_source: str | Path = "the labels",
    groups: Mapping[str, str] | None = None,
) -> Evaluation:
    """Score every model present (plus ``train_mean``) on each split; see the module doc.

    ``labels`` and each prediction table have the columns of
    :data:`traitlens.models.predictions.PREDICTION_COLUMNS`. ``groups`` maps every
    evaluated video to its group (traitlens.ingest.manifest.read_groups), which the
    bootstrap resamples; None: each video its own group. ``sources`` maps a model name to
    its predictions file, named in error messages. Rows are ordered by split (as given), then
    by model in :data:`MODELS` order with ``train_mean`` last; models absent from
    ``predictions_by_model`` are skipped.
    """
    unknown = sorted(set(predictions_by_model) - set(MODELS))
    if unknown:
        raise UserError(
            f"unknown model name(s) {unknown}: the evaluation knows {list(MODELS)} "
            f"({BASELINE!r} is computed, not read)"
        )
    bad = sorted(set(splits) - set(SPLITS))
    if bad or not splits:
        raise UserError(f"evaluation splits must be some of {list(SPLITS)}, got {list(splits)}")
    splits = list(dict.fromkeys(splits))
    sources = {m: str((sources or {}).get(m, f"the predictions of {m!r}")) for m in MODELS}
    _check_labels(labels, splits, str(labels_source))
    for model, table in predictions_by_model.items():
        _check_predictions(table, labels, sources[model])

    baseline = train_mean(labels)
    models = [m for m in MODELS if m in predictions_by_model] + [BASELINE]
    acc_rows, metric_rows, comparison_rows = [], [], []
    for split in splits:
        truth = labels[labels["split"] == split]
        label = truth[list(BIG_FIVE)].to_numpy(float)
        group = _split_groups(truth, groups, str(labels_source))
        n_groups = count_groups(group, len(truth))
        preds: dict[str, np.ndarray] = {}
        for model in models:
            if model == BASELINE:
                pred, n_fallback = np.tile(baseline, (len(truth), 1)), 0
            else:
                pred, n_fallback = _scored(predictions_by_model[model], truth["video_id"], baseline)
            preds[model] = pred
            per_trait = trait_metrics(pred, label)
            ci = bootstrap_mean_accuracy(pred, label, n_boot, confidence, seed, group)
            acc_rows.append(
                {
                    "model": model,
                    "split": split,
                    "n_videos": len(truth),
                    "n_groups": n_groups,
                    "n_fallback": n_fallback,
                    "mean": ci.estimate,
                    "mean_ci_low": ci.low,
                    "mean_ci_high": ci.high,
                    **dict(zip(BIG_FIVE, per_trait["accuracy"], strict=True)),
                    # NaN when a trait's value is undefined (r of a constant prediction)
                    **{m: float(per_trait[m].mean()) for m in ("pearson_r", "ccc", "r2")},
                }
            )
            for i, trait in enumerate(BIG_FIVE):
                metric_rows.append(
                    {"model": model, "split": split, "trait": trait}
                    | {m: float(per_trait[m][i]) for m in METRICS}
                )
        for a, b in COMPARISONS:
            if a in preds and b in preds:
                cmp = paired_bootstrap(preds[a], preds[b], label, n_boot, confidence, seed, group)
                comparison_rows.append(
                    {
                        "comparison": f"{a} - {b}",
                        "split": split,
                        "diff_mean_accuracy": cmp.diff,
                        "ci_low": cmp.low,
                        "ci_high": cmp.high,
                        "p_value": cmp.p_value,
                        "n_videos": cmp.n_videos,
                        "n_groups": cmp.n_groups,
                        "n_boot": cmp.n_boot,
                    }
                )
    return Evaluation(
        accuracy=pd.DataFrame(acc_rows, columns=list(ACCURACY_COLUMNS)),
        metrics=pd.DataFrame(metric_rows, columns=list(METRICS_COLUMNS)),
        comparisons=pd.DataFrame(comparison_rows, columns=list(COMPARISON_COLUMNS)),
        n_boot=int(n_boot),
        confidence=float(confidence),
        seed=int(seed),
    )


def _fmt(x: float, digits: int = 3) -> str:
    # round(...) + 0.0 turns -0.0 into 0.0, so a tiny negative R^2 does not print as -0.000
    return "n/a" if not math.isfinite(x) else f"{round(x, digits) + 0.0:.{digits}f}"


def _fmt_p(p: float, n_boot: int) -> str:
    # At the floor the bootstrap only bounds p from above.
    return f"≤ {p:.2g}" if p <= 1.0 / (n_boot + 1) else f"{p:.3g}"


def render_markdown(result: Evaluation) -> str:
    """The human-readable summary: one table per split, then the comparisons and notes."""
    level = f"{result.confidence * 100:g}%"
    acc = result.accuracy
    lines = ["# Accuracy of the trait regressors", ""]
    for split, rows in acc.groupby("split", sort=False):
        n_videos, n_groups = int(rows["n_videos"].iloc[0]), int(rows["n_groups"].iloc[0])
        lines += [
            f"## {split} ({n_videos} videos, {n_groups} groups)",
            "",
            f"| model | mean accuracy [{level} CI] | O | C | E | A | N | r | CCC | R² "
            "| no prediction |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows.itertuples(index=False):
            r = row._asdict()
            cells = [
                r["model"],
                f"{r['mean']:.3f} [{r['mean_ci_low']:.3f}, {r['mean_ci_high']:.3f}]",
                *(_fmt(r[t]) for t in BIG_FIVE),
                *(_fmt(r[m]) for m in ("pearson_r", "ccc", "r2")),
                str(r["n_fallback"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", _unit_line(n_videos, n_groups), ""]
    if not result.comparisons.empty:
        lines += [
            "## Comparisons (paired bootstrap on the same videos)",
            "",
            f"| comparison | split | difference in mean accuracy [{level} CI] | p | videos "
            "| groups |",
            "|---|---|---|---|---|---|",
        ]
        for row in result.comparisons.itertuples(index=False):
            lines.append(
                f"| {row.comparison} | {row.split} | {row.diff_mean_accuracy:+.4f} "
                f"[{row.ci_low:+.4f}, {row.ci_high:+.4f}] | {_fmt_p(row.p_value, row.n_boot)} "
                f"| {row.n_videos} | {row.n_groups} |"
            )
        lines.append("")
    lines += [
        "## Notes",
        "",
        "- Accuracy = 1 - mean absolute error (MAE) per trait; the mean accuracy averages the "
        "five traits (O, C, E, A, N). r, CCC and R² are means over the five traits; r is "
        "undefined (n/a) for a constant prediction such as train_mean.",
        f"- CIs: percentile cluster bootstrap, {result.n_boot} resamples, {level} level, "
        f"seed {result.seed} (the same resamples for every model of a split). Each resample "
        "draws the split's groups (the manifest's 'group', the person) with replacement and "
        "takes all of their videos, since clips of one person are correlated; where every "
        "group is one video, this is the bootstrap over videos.",
        "- p: two-sided paired-bootstrap p-value for no difference, twice the smaller share "
        "of resampled differences on either side of 0, floored at 1/(resamples + 1).",
        "- train_mean predicts every video with the train split's mean of each trait. A video "
        "a model has no prediction for (column 'no prediction') is scored with that "
        "train-mean prediction, so every model is scored on the same videos.",
        "",
    ]
    return "\n".join(lines)


def _unit_line(n_videos: int, n_groups: int) -> str:
    if n_groups < n_videos:
        return (
            f"intervals: cluster bootstrap over persons (groups): {n_groups} groups, each "
            "resampled with all of its videos"
        )
    return "intervals: bootstrap over videos (every video its own group)"


def plot_accuracy(accuracy: pd.DataFrame, path: str | Path, confidence: float = 0.95) -> None:
    """Bar figure (PNG): mean accuracy per model with CI error bars, one group per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(accuracy["model"]))
    splits = list(dict.fromkeys(accuracy["split"]))
    # a model keeps its colour whichever other models a config trains
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(MODELS)} | {BASELINE: "0.65"}
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(3.0 + 0.5 * len(splits) * len(models), 4.0))
    for k, model in enumerate(models):
        rows = accuracy[accuracy["model"] == model].set_index("split").reindex(splits)
        x = np.arange(len(splits)) + (k - (len(models) - 1) / 2) * width
        err = np.vstack([rows["mean"] - rows["mean_ci_low"], rows["mean_ci_high"] - rows["mean"]])
        ax.bar(
            x,
            rows["mean"],
            width * 0.92,
            yerr=err,
            capsize=3,
            color=colours[model],
            hatch="//" if model == BASELINE else None,
            edgecolor="0.3",
            linewidth=0.5,
            label=model,
        )
    # Accuracies cluster around 0.85-0.95: zoom to the data, else every bar looks equal.
    low, high = float(accuracy["mean_ci_low"].min()), float(accuracy["mean_ci_high"].max())
    pad = max(0.15 * (high - low), 0.003)
    ax.set_ylim(low - pad, min(1.0, high + pad))
    n_of = accuracy.groupby("split", sort=False)["n_videos"].first()
    ax.set_xticks(np.arange(len(splits)), [f"{s}\n({n_of[s]} videos)" for s in splits])
    ax.set_ylabel("mean accuracy (1 - MAE)\ny-axis zoomed, does not start at 0")
    ax.set_title(f"Mean accuracy per model, {confidence * 100:g}% bootstrap CI", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _write_tsv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format=FLOAT_FORMAT, na_rep="")


def write_outputs(
    result: Evaluation,
    *,
    table: str | Path,
    markdown: str | Path,
    metrics: str | Path,
    comparisons: str | Path,
    figure: str | Path,
) -> None:
    """Write all evaluation outputs atomically (TSVs with 6 decimals; NaN as an empty cell)."""
    _write_tsv(result.accuracy, table)
    _write_tsv(result.metrics, metrics)
    _write_tsv(result.comparisons, comparisons)
    write_text_atomic(markdown, render_markdown(result))
    plot_accuracy(result.accuracy, figure, result.confidence)
