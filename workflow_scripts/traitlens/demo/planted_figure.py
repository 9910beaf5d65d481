"""The planted-truth scorecard (rule plot_planted): every goal of ``validation/planted.json``
as one row, its value against the zone that meets the goal, met in green, missed in red,
not measured in grey. The numbers of a row are written beside it, so a reader sees at a
glance which checks and controls hold without reading tables/planted.tsv."""

from __future__ import annotations

import json
import math
from pathlib import Path

from traitlens.core.atomic import save_figure
from traitlens.core.errors import UserError
from traitlens.core.h5checks import rebuild_hint

COLOURS = {True: "tab:green", False: "tab:red", None: "0.6"}


def read_planted(path: str | Path) -> dict:
    """validation/planted.json with its goals; UserError naming the file when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{path}: not a readable planted-truth score ({err}); "
            f"{rebuild_hint(path, 'validate_planted')}"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("goals"), dict):
        raise UserError(
            f"{path}: no 'goals' in the planted-truth score; "
            f"{rebuild_hint(path, 'validate_planted')}"
        )
    return doc


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def goal_rows(doc: dict) -> list[dict]:
    """Per goal, in the document's order: key, value (None: not measured), goal text, met
    (None: not measured), and the zone [low, high] of values that meet it (None where its
    bound is relative to a value that was not measured)."""
    rows = []
    for key, goal in doc["goals"].items():
        target = goal.get("value")
        if goal["op"] == "in":
            zone = (float(target[0]), float(target[1]))
        elif _number(target) is None:
            zone = None
        elif goal["op"] == ">=":
            zone = (float(target), math.inf)
        else:
            zone = (-math.inf, float(target))
        rows.append({"key": key, "value": _number(doc.get(key)), "goal": goal["goal"],
                     "met": goal.get("met"), "zone": zone})  # fmt: skip
    return rows


def plot_planted(doc: dict, path: str | Path) -> None:
    """One track per goal, from 0 to a little past 1 (shares, ratios) or past its largest
    number (counts): the zone that meets the goal shaded, the value as a dot, and 'value
    (goal)' written at the right, with the track's end where it is not 1.08."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = goal_rows(doc)
    fig, ax = plt.subplots(figsize=(10.0, 1.0 + 0.34 * max(len(rows), 1)))
    for y, row in enumerate(rows):
        bounds = [b for b in (row["zone"] or ()) if math.isfinite(b)]
        top = max([1.0, row["value"] or 0.0, *bounds]) * 1.08
        ax.plot([0, 1], [y, y], color="0.85", lw=6, solid_capstyle="butt")
        if row["zone"] is not None:
            low, high = (min(max(b, 0.0), top) / top for b in row["zone"])
            ax.plot([low, high], [y, y], color="tab:green", alpha=0.35, lw=6,
                    solid_capstyle="butt")  # fmt: skip
        if row["value"] is not None:
            ax.plot(row["value"] / top, y, "o", ms=8, color=COLOURS[row["met"]],
                    markeredgecolor="k", markeredgewidth=0.6)  # fmt: skip
        value = "not measured" if row["value"] is None else f"{row['value']:.3g}"
        scale = f", track 0 to {top:.3g}" if top > 1.08 else ""  # shares: 0 to 1
        ax.annotate(f"{value}  (goal {row['goal']}{scale})", (1.0, y),
                    xytext=(8, 0), textcoords="offset points", va="center", fontsize=8,
                    color=COLOURS[row["met"]] if row["met"] is not None else "0.4")  # fmt: skip
    ax.set_yticks(range(len(rows)), [row["key"] for row in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    met = sum(row["met"] is True for row in rows)
    ax.set_title(
        f"Scored against the planted truth: {met} of {len(rows)} goals met "
        "(green zone: values that meet the goal)",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
