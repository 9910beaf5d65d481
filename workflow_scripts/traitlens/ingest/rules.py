"""Rules of the ingest stage (rules/data.smk): one function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from traitlens.core.atomic import write_text_atomic
from traitlens.core.errors import Job, UserError
from traitlens.ingest.labels import read_annotations
from traitlens.ingest.manifest import (
    GROUP_COLUMN,
    labels_from_manifest_rows,
    manifest_columns,
    merge_splits,
    to_tsv,
)
from traitlens.ingest.manifest import (
    build_manifest as join_videos_and_labels,
)
from traitlens.ingest.sources import read_manifest_rows

log = logging.getLogger("traitlens.build_manifest")


def build_manifest(job: Job) -> None:
    """Join the data set's videos and labels into manifest.tsv; qc/ingest.tsv lists the
    videos left out (a label but no file, or a file but no label)."""
    if job.params.format == "manifest":
        manifest = job.input.manifest
        labels = labels_from_manifest_rows(
            read_manifest_rows(manifest, job.params.paths_outside), manifest
        )
    else:
        labels = merge_splits(
            {
                split: (job.input[split], read_annotations(job.input[split]))
                for split in ("training", "validation", "test")
            }
        )
    videos = [(v, p, s) for v, p, s in job.params.videos if Path(p).is_file()]
    result = join_videos_and_labels(videos, labels)
    if result.unmatched and job.params.on_unmatched == "error":
        # Snakemake deletes a failed job's outputs, qc/ingest.tsv included: the message
        # (kept in the job's log) is where the list survives, so it names them all.
        raise UserError(
            f"{len(result.unmatched)} video(s) have a label but no file, or a file but no "
            f"label:\n  {_listing(result.unmatched, 1000)}\nAdd the missing files or labels, "
            "or set ingest.on_unmatched: warn to leave them out and go on."
        )
    write_text_atomic(
        job.output.unmatched, to_tsv(result.unmatched, ["video_id", "path", "problem"])
    )
    if result.unmatched:
        log.warning(
            "%d video(s) left out of the manifest (all listed in %s):\n  %s",
            len(result.unmatched),
            job.output.unmatched,
            _listing(result.unmatched, 20),
        )
    if not result.rows:
        raise UserError(
            f"no video has both a file and labels: nothing to do (see {job.output.unmatched})"
        )
    write_text_atomic(
        job.output.manifest, to_tsv(result.rows, manifest_columns(result.has_interview))
    )
    if result.own_groups:
        # Once per run, not per video: on First Impressions these are the odd few.
        why = (
            f"{job.input.manifest} has no {GROUP_COLUMN!r} column"
            if job.params.format == "manifest"
            else "their ids are not <YouTube id>.<NNN>"
        )
        log.warning(
            "%d video(s) are their own group (%s), e.g. %r: the bootstrap treats each as "
            "a person of its own",
            len(result.own_groups),
            why,
            result.own_groups[0],
        )
    splits = ("train", "validation", "test")
    counts = {s: sum(r["split"] == s for r in result.rows) for s in splits}
    groups = {s: len({r[GROUP_COLUMN] for r in result.rows if r["split"] == s}) for s in splits}
    log.info(
        "manifest: %d videos (%s)",
        len(result.rows),
        ", ".join(f"{k} {v} in {groups[k]} groups" for k, v in counts.items()),
    )


def _listing(unmatched: list[dict[str, str]], limit: int) -> str:
    lines = [f"{u['video_id']}: {u['problem']}" for u in unmatched[:limit]]
    if len(unmatched) > limit:
        lines.append(f"... and {len(unmatched) - limit} more")
    return "\n  ".join(lines)
