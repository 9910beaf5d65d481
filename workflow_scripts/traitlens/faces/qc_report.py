"""The report's quality-control section (rule report_qc): the run's QC tables summed up.

It reads the three QC tables (``qc/videos.tsv``: extraction and faces per video;
``qc/faces/<shard>.tsv``: why frames have no face; ``qc/ingest.tsv``: the videos ingest
left out) and writes the face QC of all shards as one table, a figure of the counts and
an HTML page that lists only the videos worth a look. A report reader sees how many
videos made it through, and which did not, without opening a TSV.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.atomic import save_figure, write_text_atomic, write_tsv
from traitlens.core.tables import read_table
from traitlens.extract.qc import QC_COLUMNS
from traitlens.faces.faces_qc import FACE_QC_COLUMNS, read_face_qc

INGEST_COLUMNS = ["video_id", "path", "problem"]
# a face QC reason cell: 'mesh failed: 1; no face: 2' (faces_qc.reason_summary)
_REASON = re.compile(r"(.+?):\s*(\d+)")


@dataclass(frozen=True)
class QcTables:
    """The three QC tables of a run, read and typed."""

    videos: pd.DataFrame  # qc/videos.tsv
    faces: pd.DataFrame  # every shard's qc/faces/<shard>.tsv, sorted by video id
    ingest: pd.DataFrame  # qc/ingest.tsv


def read_qc_tables(videos: str | Path, faces: Sequence[str | Path], ingest: str | Path) -> QcTables:
    """The QC tables; UserError naming the file when one is missing, cut short or foreign."""
    video_qc = read_table(
        videos, "video QC", "summarise_qc", QC_COLUMNS,
        dtype={"video_id": str, "status": str, "reason": str, "has_audio": str},
        keep_default_na=False,
    )  # fmt: skip
    for column in ("duration_s", "fps", "width", "height", "n_frames", "n_faces"):
        video_qc[column] = pd.to_numeric(video_qc[column], errors="coerce")
    face_qc = combine_face_qc([read_face_qc(path) for path in faces])
    left_out = read_table(ingest, "ingest", "build_manifest", INGEST_COLUMNS, str, False)
    return QcTables(video_qc, face_qc, left_out)


def combine_face_qc(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The shards' face QC tables as one, sorted by video id."""
    tables = list(tables)
    combined = (
        pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FACE_QC_COLUMNS)
    )
    return combined[FACE_QC_COLUMNS].sort_values("video_id", kind="stable").reset_index(drop=True)


def reason_counts(reasons: Iterable[str]) -> dict[str, int]:
    """Frames per reason, summed over the videos' reason cells ('mesh failed: 1; no face:
    2'), most frequent first; a part not in that form counts once under its own text."""
    counts: dict[str, int] = {}
    for cell in reasons:
        for part in str(cell).split(";"):
            match = _REASON.fullmatch(part.strip())
            reason, n = (match.group(1), int(match.group(2))) if match else (part.strip(), 1)
            if reason:
                counts[reason] = counts.get(reason, 0) + n
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _flag(column: pd.Series) -> np.ndarray:
    return column.astype(str).str.lower().isin({"true", "1"}).to_numpy()


def extracted(videos: pd.DataFrame) -> pd.DataFrame:
    return videos[videos["status"] == "ok"]


def qc_counts(tables: QcTables) -> list[tuple[str, int]]:
    """(what, number of videos), in the order a run goes: ingest, extraction, audio, faces."""
    ok = extracted(tables.videos)
    faces, frames = ok["n_faces"].fillna(0), ok["n_frames"].fillna(0)
    return [
        ("in the manifest", len(tables.videos)),
        ("left out at ingest (no label or no file)", len(tables.ingest)),
        ("extracted", len(ok)),
        ("failed extraction", int((tables.videos["status"] != "ok").sum())),
        ("extracted, no audio stream", int((~_flag(ok["has_audio"])).sum())),
        ("a face in every frame", int(((faces == frames) & (frames > 0)).sum())),
        ("a face in some frames only", int(((faces > 0) & (faces < frames)).sum())),
        ("no face in any frame", int((faces == 0).sum())),
        ("several faces seen", int(_flag(tables.faces["multiple_faces_seen"]).sum())),
    ]


def problem_tables(tables: QcTables) -> list[tuple[str, pd.DataFrame]]:
    """(heading, rows) of the videos worth a look: each table holds only those rows."""
    videos, ok = tables.videos, extracted(tables.videos)
    short = ok[ok["n_faces"].fillna(0) < ok["n_frames"].fillna(0)]
    short = short[["video_id", "n_frames", "n_faces"]].merge(
        tables.faces[["video_id", "multiple_faces_seen", "reason"]], on="video_id", how="left"
    )
    several = tables.faces[_flag(tables.faces["multiple_faces_seen"])]
    return [
        ("Videos that failed extraction", videos.loc[videos["status"] != "ok",
                                                     ["video_id", "status", "reason"]]),
        ("Videos with frames without a face", short),
        ("Videos where several faces were seen", several[["video_id", "n_frames", "n_faces",
                                                          "reason"]]),
        ("Extracted videos without an audio stream",
         ok.loc[~_flag(ok["has_audio"]), ["video_id", "duration_s", "n_frames"]]),
        ("Videos left out at ingest", tables.ingest),
    ]  # fmt: skip


_STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f0f0f0; }
td.n { text-align: right; }
p.none { color: #2a7; }
"""


def _html_table(rows: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows.columns)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in rows.itertuples(index=False)
    )
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render_page(
    counts: Sequence[tuple[str, int]], problems: Sequence[tuple[str, pd.DataFrame]]
) -> str:
    """A self-contained HTML page (no script): the counts, then each problem table, or
    'none' where no video has that problem."""
    count_rows = "\n".join(
        f'<tr><td>{html.escape(what)}</td><td class="n">{n}</td></tr>' for what, n in counts
    )
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        f"<title>Quality control</title>\n<style>{_STYLE}</style>\n</head>\n<body>",
        "<h1>Quality control</h1>",
        "<h2>Videos</h2>",
        f"<table>\n<tr><th>videos</th><th>number</th></tr>\n{count_rows}\n</table>",
    ]
    for heading, rows in problems:
        parts.append(f"<h2>{html.escape(heading)} ({len(rows)})</h2>")
        parts.append(_html_table(rows) if len(rows) else '<p class="none">none</p>')
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


def plot_qc(tables: QcTables, path: str | Path) -> None:
    """Three panels: the video counts; per extracted video, the share of its frames with a
    face; the reasons frames have no face, in frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = qc_counts(tables)
    ok = extracted(tables.videos)
    share = (ok["n_faces"] / ok["n_frames"].where(ok["n_frames"] > 0)).dropna().to_numpy()
    reasons = reason_counts(tables.faces["reason"])
    fig, (left, middle, right) = plt.subplots(
        1, 3, figsize=(13.0, 3.8), width_ratios=[1.3, 1.0, 1.0]
    )
    labels = [what for what, _ in counts][::-1]
    values = [n for _, n in counts][::-1]
    bad = {"left out at ingest (no label or no file)", "failed extraction",
           "no face in any frame", "a face in some frames only"}  # fmt: skip
    colours = [
        "tab:red" if label in bad and n else "tab:blue"
        for label, n in zip(labels, values, strict=True)
    ]
    left.barh(np.arange(len(labels)), values, color=colours)
    left.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    for y, n in enumerate(values):
        left.annotate(str(n), (n, y), xytext=(3, 0), textcoords="offset points", va="center",
                      fontsize=8)  # fmt: skip
    left.set_xlim(0, max(values + [1]) * 1.15)
    left.set_xlabel("videos")
    left.set_title("videos through the run", fontsize=10)
    bins = np.linspace(0, 1, 11)
    middle.hist(share, bins=bins, color="tab:blue", edgecolor="white")
    middle.set_xlabel("share of the video's frames with a face")
    middle.set_ylabel("extracted videos")
    middle.set_title(f"faces per video ({len(share)} videos)", fontsize=10)
    if reasons:
        names = list(reasons)[::-1]
        right.barh(np.arange(len(names)), [reasons[r] for r in names], color="tab:orange")
        right.set_yticks(np.arange(len(names)), names, fontsize=8)
        right.set_xlabel("frames")
    else:
        right.text(0.5, 0.5, "every frame has a face", ha="center", va="center",
                   transform=right.transAxes)  # fmt: skip
        right.set_xticks([])
        right.set_yticks([])
    right.set_title("why frames have no face", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def write_report_qc(
    tables: QcTables, *, faces_out: str | Path, figure_out: str | Path, page_out: str | Path
) -> list[tuple[str, int]]:
    """The combined face QC table, the figure and the page, each written atomically; the
    counts, for the log."""
    counts = qc_counts(tables)
    write_tsv(tables.faces, faces_out)
    plot_qc(tables, figure_out)
    write_text_atomic(page_out, render_page(counts, problem_tables(tables)))
    return counts
