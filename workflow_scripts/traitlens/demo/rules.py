"""Rules of the demo data set (rules/data.smk's generate_demo) and of its planted-truth
scoring (validate_aus, validate_planted): one function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``. The
generator's modules (mediapipe, OpenCV) are imported inside generate_demo.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from traitlens.aus.estimate_aus import write_tsv
from traitlens.core.errors import Job, UserError
from traitlens.core.tables import read_table
from traitlens.demo.au_validation import scatter_figure, validate
from traitlens.demo.planted import (
    cam_true_face_overlap,
    load_truth,
    read_frame_geometry,
    read_truth_frames,
    read_video_sizes,
    score_planted,
    write_outputs,
)
from traitlens.interpret.au_emergence import NULL_COLUMNS

log = logging.getLogger("traitlens.demo")
DETECTOR_COLUMNS = ("layer", "unit", "region", "histogram_detector", "netdissect_detector")


def generate_demo(job: Job) -> None:
    """The planted-signal demo data set from config ``demo``: one mp4 per planned id, the
    three annotation pickles and the ground-truth folder; videos are rendered in a pool
    of the job's threads."""
    from traitlens.demo.generate import generate

    out = job.output
    planned = sorted(os.path.basename(p)[: -len(".mp4")] for p in out.videos)
    if sorted(job.params.video_ids) != planned:
        raise UserError("generate_demo: params.video_ids and output.videos disagree")
    summary = generate(
        dict(job.params.demo),
        list(out.videos),
        {"training": out.training, "validation": out.validation, "test": out.test},
        out.ground_truth,
        threads=max(1, int(job.threads)),
    )
    log.info("demo data set: %(videos)d videos in %(seconds).1f s", summary)


def validate_aus(job: Job) -> None:
    """Estimated vs planted AUs: validation/aus.tsv and figures/au_validation.png."""
    table, joined, planted = validate(list(job.input.aus), job.input.ground_truth)
    write_tsv(table, job.output.table)
    scatter_figure(joined, table, planted, job.output.figure)
    for row in table.itertuples():
        log.info(
            "%s %s r=%.3f cross-talk=%.3f sd=%.3f n=%d",
            row.au,
            "planted  " if row.planted else "unplanted",
            row.pearson_r,
            row.cross_talk_r,
            row.estimate_sd,
            row.n_frames,
        )


def validate_planted(job: Job) -> None:
    """The interpretability results scored against the demo's planted truth:
    validation/planted.json and tables/planted.tsv."""
    folder = Path(job.input.ground_truth)
    truth_path = folder / "planted.json"
    truth = load_truth(truth_path)
    truth_frames = read_truth_frames(folder / "frames.tsv")
    geometry = read_frame_geometry(list(job.input.frames))
    sizes = read_video_sizes(job.input.qc)
    threshold, min_overlap = float(job.params.threshold), float(job.params.min_overlap)
    alpha = float(job.params.alpha)
    cams = {
        name: cam_true_face_overlap(path, truth_frames, geometry, sizes, threshold, min_overlap)
        for name, path in (("cam", job.input.cam), ("gradcam", job.input.gradcam))
    }
    text = {"au": str, "layer": str}  # AU and layer names stay strings
    detectors = read_table(
        job.input.detectors, "detectors", "find_detectors", DETECTOR_COLUMNS, text
    )
    emergence = read_table(
        job.input.emergence, "AU emergence", "find_au_detectors", ["au", "unit", "layer", "p"], text
    )
    null = read_table(job.input.null, "AU emergence null", "find_au_detectors", NULL_COLUMNS, text)
    doc = score_planted(
        truth, cams["cam"], cams["gradcam"], detectors, emergence, null,
        threshold, min_overlap, alpha,
    )  # fmt: skip
    write_outputs(doc, job.output.json, job.output.table)
    for key, goal in doc["goals"].items():
        log.info("%s = %s (goal %s, met %s)", key, doc.get(key), goal["goal"], goal["met"])
    for note in doc["notes"]:
        log.info("note: %s", note)
