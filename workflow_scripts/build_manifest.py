"""Snakemake entry: join the data set's videos and labels into manifest.tsv."""

import logging
from pathlib import Path

from traitlens.atomic import write_text_atomic
from traitlens.errors import UserError, run_entry
from traitlens.ingest import (
    build_manifest,
    labels_from_manifest_rows,
    manifest_columns,
    merge_splits,
    to_tsv,
)
from traitlens.labels import read_annotations
from traitlens.sources import read_manifest_rows

log = logging.getLogger("traitlens.build_manifest")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    if sm.params.format == "manifest":
        manifest = sm.input.manifest
        labels = labels_from_manifest_rows(read_manifest_rows(manifest), manifest)
    else:
        labels = merge_splits(
            {
                split: (sm.input[split], read_annotations(sm.input[split]))
                for split in ("training", "validation", "test")
            }
        )
    videos = [(v, p, s) for v, p, s in sm.params.videos if Path(p).is_file()]
    result = build_manifest(videos, labels)
    write_text_atomic(
        sm.output.unmatched, to_tsv(result.unmatched, ["video_id", "path", "problem"])
    )
    if result.unmatched:
        listing = "\n  ".join(f"{u['video_id']}: {u['problem']}" for u in result.unmatched[:20])
        message = (
            f"{len(result.unmatched)} video(s) left out of the manifest (all listed in "
            f"{sm.output.unmatched}):\n  {listing}"
        )
        if sm.params.on_unmatched == "error":
            raise UserError(
                message + "\nSet ingest.on_unmatched: warn to leave them out and go on."
            )
        log.warning("%s", message)
    if not result.rows:
        raise UserError(
            f"no video has both a file and labels: nothing to do (see {sm.output.unmatched})"
        )
    write_text_atomic(
        sm.output.manifest, to_tsv(result.rows, manifest_columns(result.has_interview))
    )
    counts = {s: sum(r["split"] == s for r in result.rows) for s in ("train", "validation", "test")}
    log.info(
        "manifest: %d videos (%s)",
        len(result.rows),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
    )


run_entry(main, snakemake.log[0])  # noqa: F821
