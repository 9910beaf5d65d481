"""Snakemake entry: merge per-shard QC into qc/videos.tsv; stop if too many failed."""

import logging

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import run_entry
from traitlens.core.tables import read_table
from traitlens.extract.qc import check_failure_budget, combine_shard_qc
from traitlens.faces.faces_qc import face_counts, read_face_qc

log = logging.getLogger("traitlens.summarise_qc")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    tables = [
        # dtype str: the shards' values pass through unchanged (e.g. true/false)
        read_table(path, "video QC", "extract_shard", ["video_id", "status"], str, False)
        for path in sm.input.shards
    ]
    n_faces = face_counts([read_face_qc(path) for path in sm.input.faces])
    qc = combine_shard_qc(tables, n_faces)
    for row in qc[qc["status"] != "ok"].itertuples():
        log.warning("failed: %s: %s", row.video_id, row.reason)
    summary = check_failure_budget(qc, sm.params.max_failed_fraction)
    with atomic_path(sm.output.videos) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    log.info("%s", summary)


run_entry(main, snakemake.log[0])  # noqa: F821
