"""Ingest: join videos (id -> file) with labels (id -> split, traits) into the manifest.

Pure functions; the entry script ``workflow_scripts/ingest.py`` does the I/O.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from traitlens.core.errors import UserError
from traitlens.core.h5checks import rebuild_hint
from traitlens.core.tables import read_table
from traitlens.ingest.labels import BIG_FIVE, OPTIONAL_TRAITS, _as_label

# First Impressions names its label files by split; the manifest uses short split names.
SPLIT_ALIASES = {
    "training": "train",
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
# The person a video shows: clips of one person are correlated, so the bootstrap
# resamples groups, not videos (traitlens.evaluation.bootstrap).
GROUP_COLUMN = "group"
MANIFEST_COLUMNS = ("video_id", "path", "split", GROUP_COLUMN, *BIG_FIVE)
# First Impressions names a clip <YouTube id>.<NNN>; a YouTube video shows one person.
_CLIP_ID = re.compile(r"^(?P<youtube_id>.+)\.\d{3}$")


def youtube_group(video_id: str) -> str | None:
    """The YouTube id of a First Impressions clip id (``--Ymqszjv54.001`` ->
    ``--Ymqszjv54``, ``abc.def.002`` -> ``abc.def``), or None when the id does not end in
    ``.NNN`` (such a video is its own group)."""
    match = _CLIP_ID.match(video_id)
    return match.group("youtube_id") if match else None


@dataclass
class Labelled:
    split: str
    traits: dict[str, float]
    source: str  # the label file (or manifest line) it came from
    group: str | None = None  # the person (GROUP_COLUMN); None: the video is its own group


@dataclass
class IngestResult:
    rows: list[dict[str, object]]
    unmatched: list[dict[str, str]] = field(default_factory=list)
    has_interview: bool = False
    own_groups: list[str] = field(default_factory=list)  # videos with no known group


def merge_splits(
    per_split: dict[str, tuple[str, dict[str, dict[str, float]]]],
) -> dict[str, Labelled]:
    """{split: (label file, {video: traits})} -> {video: Labelled}; a video in two splits
    is an error naming both files. The group is the id's YouTube id (:func:`youtube_group`)."""
    merged: dict[str, Labelled] = {}
    clashes: list[str] = []
    for split, (source, videos) in per_split.items():
        short = SPLIT_ALIASES[split]
        for video_id, traits in videos.items():
            if video_id in merged:
                clashes.append(f"{video_id!r} in {merged[video_id].source} and {source}")
                continue
            merged[video_id] = Labelled(short, traits, source, youtube_group(video_id))
    if clashes:
        raise UserError(
            f"{len(clashes)} video(s) labelled in two splits (each video belongs to one):\n  "
            + "\n  ".join(clashes[:10])
        )
    return merged


def labels_from_manifest_rows(rows: list[dict[str, str]], manifest: str) -> dict[str, Labelled]:
    """Labels of a user manifest (rows from sources.read_manifest_rows), checked. The
    optional ``group`` column names each video's person; without it, every video is its
    own group."""
    missing = [t for t in BIG_FIVE if rows and t not in rows[0]]
    if missing:
        raise UserError(f"{manifest}: trait column(s) missing: {', '.join(missing)}")
    has_group = bool(rows) and GROUP_COLUMN in rows[0]
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
        group = (row.get(GROUP_COLUMN) or "").strip() if has_group else None
        if group == "":
            problems.append(
                f"line {line}: column {GROUP_COLUMN!r} is empty (the column is optional, "
                "but when present every row needs a group: the person the video shows)"
            )
        labelled[row["video_id"]] = Labelled(split, traits, f"{manifest}:{line}", group)
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
    manifest and listed in ``unmatched`` (the caller warns or stops per config). A video
    whose label has no group is its own group (its id), listed in ``own_groups``.
    """
    files = {video_id: (path, shard) for video_id, path, shard in videos}
    has_interview = bool(labels) and all("interview" in lab.traits for lab in labels.values())
    rows: list[dict[str, object]] = []
    unmatched: list[dict[str, str]] = []
    own_groups: list[str] = []
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
            GROUP_COLUMN: video_id if lab.group is None else lab.group,
        }
        if lab.group is None:
            own_groups.append(video_id)
        row.update({t: lab.traits[t] for t in BIG_FIVE})
        if has_interview:
            row["interview"] = lab.traits["interview"]
        row["shard"] = shard
        rows.append(row)
    return IngestResult(rows, unmatched, has_interview, own_groups)


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


def read_groups(manifest: str | Path) -> dict[str, str]:
    """{video_id: group} of a manifest.tsv written by build_manifest; UserError naming the
    file when it is not one (a manifest from before the group column, say)."""
    table = read_table(
        manifest,
        "manifest",
        "build_manifest",
        ("video_id", GROUP_COLUMN),
        dtype=str,
        keep_default_na=False,  # a group may be spelled 'NA' or 'null'
    )
    empty = table.loc[table[GROUP_COLUMN] == "", "video_id"]
    if len(empty):
        raise UserError(
            f"{manifest}: {len(empty)} video(s) with an empty {GROUP_COLUMN!r} "
            f"({', '.join(empty[:5])}); {rebuild_hint(manifest, 'build_manifest')}"
        )
    return dict(zip(table["video_id"], table[GROUP_COLUMN], strict=True))
