"""Ingest: join videos (id -> file) with labels (id -> split, traits) into the manifest.

Pure functions; the entry script ``workflow_scripts/ingest.py`` does the I/O.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE, OPTIONAL_TRAITS, _as_label

# First Impressions names its label files by split; the manifest uses short split names.
SPLIT_ALIASES = {
    "training": "train",
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
MANIFEST_COLUMNS = ("video_id", "path", "split", *BIG_FIVE)


@dataclass
class Labelled:
    split: str
    traits: dict[str, float]
    source: str  # the label file (or manifest line) it came from


@dataclass
class IngestResult:
    rows: list[dict[str, object]]
    unmatched: list[dict[str, str]] = field(default_factory=list)
    has_interview: bool = False


def merge_splits(
    per_split: dict[str, tuple[str, dict[str, dict[str, float]]]],
) -> dict[str, Labelled]:
    """{split: (label file, {video: traits})} -> {video: Labelled}; a video in two splits
    is an error naming both files."""
    merged: dict[str, Labelled] = {}
    clashes: list[str] = []
    for split, (source, videos) in per_split.items():
        short = SPLIT_ALIASES[split]
        for video_id, traits in videos.items():
            if video_id in merged:
                clashes.append(f"{video_id!r} in {merged[video_id].source} and {source}")
                continue
            merged[video_id] = Labelled(short, traits, source)
    if clashes:
        raise UserError(
            f"{len(clashes)} video(s) labelled in two splits (each video belongs to one):\n  "
            + "\n  ".join(clashes[:10])
        )
    return merged


def labels_from_manifest_rows(rows: list[dict[str, str]], manifest: str) -> dict[str, Labelled]:
    """Labels of a user manifest (rows from sources.read_manifest_rows), checked."""
    missing = [t for t in BIG_FIVE if rows and t not in rows[0]]
    if missing:
        raise UserError(f"{manifest}: trait column(s) missing: {', '.join(missing)}")
    labelled: dict[str, Labelled] = {}
    problems: list[str] = []
    for line, row in enumerate(rows, start=2):
        split = SPLIT_ALIASES.get((row.get("split") or "").strip().lower())
        if split is None:
            problems.append(f"line {line}: split {row.get('split')!r} is not train/validation/test")
            continue
        traits: dict[str, float] = {}
        for trait in (*BIG_FIVE, *OPTIONAL_TRAITS):
            raw = row.get(trait)
            if raw is None or (trait in OPTIONAL_TRAITS and raw == ""):
                continue
            try:
                value = _as_label(float(raw))
            except ValueError:
                value = None
            if value is None:
                problems.append(
                    f"line {line}: {trait} is {raw!r}: labels must be numbers in [0, 1]"
                )
            else:
                traits[trait] = value
        labelled[row["video_id"]] = Labelled(split, traits, f"{manifest}:{line}")
    if problems:
        raise UserError(
            f"{manifest}: {len(problems)} bad row(s):\n  "
            + "\n  ".join(problems[:10])
            + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        )
    return labelled


def build_manifest(videos: list[tuple[str, str, str]], labels: dict[str, Labelled]) -> IngestResult:
    """Join (video_id, path, shard) triples with labels.

    A labelled video without a file, or a file without labels, is left out of the
    manifest and listed in ``unmatched`` (the caller warns or stops per config).
    """
    files = {video_id: (path, shard) for video_id, path, shard in videos}
    has_interview = bool(labels) and all("interview" in lab.traits for lab in labels.values())
    rows: list[dict[str, object]] = []
    unmatched: list[dict[str, str]] = []
    for video_id in sorted(set(files) | set(labels)):
        lab = labels.get(video_id)
        if video_id not in files:
            unmatched.append(
                {
                    "video_id": video_id,
                    "path": "",
                    "problem": f"labelled in {lab.source} but no readable video file found",
                }
            )
            continue
        path, shard = files[video_id]
        if lab is None:
            unmatched.append(
                {
                    "video_id": video_id,
                    "path": path,
                    "problem": "video file has no label",
                }
            )
            continue
        row: dict[str, object] = {
            "video_id": video_id,
            "path": path,
            "split": lab.split,
        }
        row.update({t: lab.traits[t] for t in BIG_FIVE})
        if has_interview:
            row["interview"] = lab.traits["interview"]
        row["shard"] = shard
        rows.append(row)
    return IngestResult(rows, unmatched, has_interview)


def manifest_columns(has_interview: bool) -> list[str]:
    return [*MANIFEST_COLUMNS, *(["interview"] if has_interview else []), "shard"]


def to_tsv(rows: list[dict[str, object]], columns: list[str]) -> str:
    """Rows as TSV text with a header (floats written with repr precision)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return out.getvalue()
