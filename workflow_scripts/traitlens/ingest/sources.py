"""Where a data set's videos are: discovered at parse time, per dataset.format.

This is the video side of a data set (id -> file). Labels are the other side, joined by
ingest. Keeping them apart means a label change never re-runs video extraction.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from traitlens.core.errors import UserError

VIDEO_SUFFIX = ".mp4"


@dataclass(frozen=True)
class VideoSource:
    video_id: str
    path: str


def discover_videos(videos_dir: str | Path) -> list[VideoSource]:
    """Every ``*.mp4`` below ``videos_dir`` (any folder layout), sorted by id.

    Folder symlinks are not followed (a symlink loop cannot hang the scan). The id is
    the file name without ``.mp4``, as in First Impressions (``--Ymqszjv54.001``); the
    same id in two folders is an error, since labels could not tell them apart.
    """
    root = Path(videos_dir)
    if not root.is_dir():
        raise UserError(
            f"{root}: videos folder not found; set dataset.videos to the folder that "
            "holds the unpacked .mp4 files"
        )
    found: dict[str, str] = {}
    duplicates: list[str] = []
    for folder, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            if not name.lower().endswith(VIDEO_SUFFIX) or name.startswith(".tmp-"):
                continue
            video_id = name[: -len(VIDEO_SUFFIX)]
            path = os.path.join(folder, name)
            if not (os.path.isfile(path) and os.access(path, os.R_OK)):
                # A dangling link or unreadable file: ingest reports its labels as
                # having no readable file, rather than the whole run failing here.
                continue
            if video_id in found:
                duplicates.append(f"{video_id}: {found[video_id]} and {path}")
            else:
                found[video_id] = path
    if duplicates:
        raise UserError(
            f"{root}: {len(duplicates)} video id(s) found twice (ids must be unique):\n  "
            + "\n  ".join(duplicates[:10])
        )
    return [VideoSource(v, found[v]) for v in sorted(found)]


MANIFEST_REQUIRED = ("video_id", "path", "split")


def read_manifest_rows(manifest: str | Path, allow_outside: bool = False) -> list[dict[str, str]]:
    """Rows of a user manifest TSV; paths resolved relative to the manifest's folder.

    A path that leaves that folder (``../`` or an absolute path elsewhere) is refused
    unless ``allow_outside`` (config ``dataset.manifest_paths_outside``): the manifest and
    its folder are the data set, and a path out of it is most often a manifest written
    for another layout (or one that points the workflow at unrelated files).
    """
    manifest = Path(manifest)
    try:
        with manifest.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            header = reader.fieldnames or []
            missing = [c for c in MANIFEST_REQUIRED if c not in header]
            if missing:
                raise UserError(
                    f"{manifest}: column(s) missing: {', '.join(missing)} (a manifest is a "
                    "TSV with a header row: video_id, path, split and the five traits)"
                )
            rows = list(reader)
    except FileNotFoundError as err:
        raise UserError(f"{manifest}: manifest not found; check dataset.manifest") from err
    except UnicodeDecodeError as err:
        raise UserError(f"{manifest}: not UTF-8 text ({err})") from err
    seen: set[str] = set()
    outside: list[str] = []
    for line, row in enumerate(rows, start=2):
        video_id = (row.get("video_id") or "").strip()
        if not video_id:
            raise UserError(f"{manifest}:{line}: empty video_id")
        if video_id in seen:
            raise UserError(f"{manifest}:{line}: video_id {video_id!r} appears twice")
        seen.add(video_id)
        raw = row.get("path") or ""
        path = Path(raw)
        row["video_id"] = video_id
        row["path"] = str(path if path.is_absolute() else manifest.parent / path)
        if not allow_outside and not inside_folder(row["path"], manifest.parent):
            outside.append(f"line {line}: {video_id}: {raw}")
    if outside:
        folder = os.path.abspath(manifest.parent)
        raise UserError(
            f"{manifest}: {len(outside)} row(s) name a video outside the manifest's folder "
            f"{folder} (paths are read relative to it and must stay inside it):\n  "
            + "\n  ".join(outside[:20])
            + (f"\n  ... and {len(outside) - 20} more" if len(outside) > 20 else "")
            + "\nPut the manifest in the folder that holds the videos (or in a folder "
            "above it), link the videos into its folder, or set "
            "dataset.manifest_paths_outside: true if these paths are meant."
        )
    return rows


def inside_folder(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` lies inside ``folder``, judged on the names (``..`` resolved,
    symlinks not followed: a link the user put inside the folder is part of it)."""
    path = os.path.normpath(os.path.abspath(path))
    folder = os.path.normpath(os.path.abspath(folder))
    return os.path.commonpath([path, folder]) == folder


def manifest_videos(manifest: str | Path, allow_outside: bool = False) -> list[VideoSource]:
    """The videos a manifest lists whose files exist (the rest are reported by ingest)."""
    rows = read_manifest_rows(manifest, allow_outside)
    return sorted(
        (VideoSource(r["video_id"], r["path"]) for r in rows if os.path.isfile(r["path"])),
        key=lambda s: s.video_id,
    )


def dataset_videos(dataset: dict, demo_video_ids: list[str] | None = None) -> list[VideoSource]:
    """The videos of the configured data set (its ``dataset`` config section).

    The demo's videos are the ones its generator plans (``demo_video_ids``): the demo
    package plans them, since ingest comes before the stages the generator uses.
    """
    fmt = dataset["format"]
    if fmt == "first_impressions":
        return discover_videos(dataset["videos"])
    if fmt == "manifest":
        return manifest_videos(dataset["manifest"], dataset.get("manifest_paths_outside", False))
    if fmt == "demo":
        videos_dir = Path(dataset["videos"])
        return [
            VideoSource(video_id, str(videos_dir / f"{video_id}{VIDEO_SUFFIX}"))
            for video_id in sorted(demo_video_ids or ())
        ]
    raise UserError(f"dataset.format: unknown format {fmt!r} (demo | first_impressions | manifest)")
