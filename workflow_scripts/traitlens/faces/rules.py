"""Rules of the face stage (rules/faces.smk; rules/extract.smk's summarise_qc, which joins
the extraction and face QC; rules/analysis.smk's report_qc, the report's QC section): one
function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``. The
mediapipe and OpenCV modules are imported inside the rules that use them: summarise_qc
runs in the light core env.
"""

from __future__ import annotations

import logging

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import Job
from traitlens.core.tables import read_table
from traitlens.extract.qc import check_failure_budget, combine_shard_qc
from traitlens.faces.faces_qc import face_counts, read_face_qc

log = logging.getLogger("traitlens.faces")


def detect_faces(job: Job) -> None:
    """Faces (detection, 478 landmarks, aligned crops) of one shard's frames, and its QC."""
    from traitlens.faces.detect_faces import detect_faces_shard
    from traitlens.faces.video_faces import FaceParams

    detect_faces_shard(
        job.input.frames,
        faces_out=job.output.faces,
        qc_out=job.output.qc,
        params=FaceParams.from_mapping(job.params.faces),
    )


def build_face_template(job: Job) -> None:
    """The semantic face template (mean landmarks, region masks) and its figure."""
    from traitlens.faces.face_template import build_face_template as build_template

    build_template(
        list(job.input.faces),
        template_out=job.output.template,
        figure_out=job.output.figure,
        dilation_px=int(job.params.region_dilation_px),
    )


def summarise_qc(job: Job) -> None:
    """Merge the shards' extraction and face QC into qc/videos.tsv; stop when more videos
    failed than extract.max_failed_fraction allows."""
    tables = [
        # dtype str: the shards' values pass through unchanged (e.g. true/false)
        read_table(path, "video QC", "extract_shard", ["video_id", "status"], str, False)
        for path in job.input.shards
    ]
    n_faces = face_counts([read_face_qc(path) for path in job.input.faces])
    qc = combine_shard_qc(tables, n_faces)
    for row in qc[qc["status"] != "ok"].itertuples():
        log.warning("failed: %s: %s", row.video_id, row.reason)
    summary = check_failure_budget(qc, job.params.max_failed_fraction)
    with atomic_path(job.output.videos) as tmp:
        qc.to_csv(tmp, sep="\t", index=False)
    log.info("%s", summary)


def report_qc(job: Job) -> None:
    """The report's QC section: every shard's face QC as one table, a figure of the QC
    counts and an HTML page listing the videos worth a look (traitlens.faces.qc_report)."""
    from traitlens.faces.qc_report import read_qc_tables, write_report_qc

    tables = read_qc_tables(job.input.videos, list(job.input.faces), job.input.ingest)
    counts = write_report_qc(
        tables, faces_out=job.output.faces, figure_out=job.output.figure, page_out=job.output.page
    )
    log.info("%s", "; ".join(f"{what}: {n}" for what, n in counts))
