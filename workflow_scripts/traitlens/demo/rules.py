"""Rules of the demo data set (rules/data.smk's generate_demo) and of its planted-truth
scoring (planted_au_table, validate_aus, validate_planted; plot_planted, the scorecard for
the report): one function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``. The
generator's modules (mediapipe, OpenCV) are imported inside generate_demo.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from traitlens.aus.estimate_aus import write_tsv
from traitlens.core.errors import Job, UserError
from traitlens.core.tables import read_table
from traitlens.demo.accuracy_ceiling import accuracy_ratios, landmark_features, unit_features
from traitlens.demo.au_validation import scatter_figure, validate
from traitlens.demo.planted import (
    cam_true_face_overlap,
    detector_au_correlations,
    load_truth,
    read_frame_geometry,
    read_truth_frames,
    read_video_sizes,
    score_planted,
    signal_regions,
    write_outputs,
)
from traitlens.faces.faces_file import read_video_landmark_means
from traitlens.ingest.manifest import read_groups
from traitlens.interpret.au_emergence import NULL_COLUMNS
from traitlens.interpret.detectors import CEILING_COLUMNS
from traitlens.interpret.dump_file import dump_info, read_keys, read_reduction
from traitlens.models.predictions import read_labels

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


def planted_au_table(job: Job) -> None:
    """validation/planted_aus.tsv: the AU tables' frames with the planted intensities in
    place of the estimates, for the emergence test on the truth."""
    import pandas as pd

    from traitlens.aus.estimate_aus import read_frame_table
    from traitlens.demo.au_validation import load_truth as load_planted_intensities
    from traitlens.demo.au_validation import planted_au_table as with_planted_values

    estimates = pd.concat([read_frame_table(p) for p in job.input.aus], ignore_index=True)
    truth, planted = load_planted_intensities(job.input.ground_truth)
    table = with_planted_values(estimates, truth)
    write_tsv(table, job.output.table)
    log.info(
        "%d frames (%d with a face), planted AUs %s", len(table), table["success"].sum(), planted
    )


def validate_aus(job: Job) -> None:
    """Estimated vs planted AUs: validation/aus.tsv and figures/au_validation.png."""
    table, joined, planted = validate(
        list(job.input.aus), job.input.ground_truth, _optional_inputs(job, "uncalibrated")
    )
    write_tsv(table, job.output.table)
    scatter_figure(joined, table, planted, job.output.figure)
    for row in table.itertuples():
        log.info(
            "%s %s r=%.3f (shuffled %.3f, uncalibrated %.3f) cross-talk=%.3f sd=%.3f n=%d",
            row.au,
            "planted  " if row.planted else "unplanted",
            row.pearson_r,
            row.shuffled_r,
            row.uncalibrated_r,
            row.cross_talk_r,
            row.estimate_sd,
            row.n_frames,
        )


def _optional_input(job: Job, name: str):
    """The path of an optional input of the rule, None when the rule has none by that name."""
    value = getattr(job.input, name, None)
    if value is None or (not isinstance(value, str) and not len(value)):
        return None
    return value if isinstance(value, str) else value[0]


def _optional_inputs(job: Job, name: str) -> list[str]:
    """The paths of an optional list input of the rule, empty when it has none by that name."""
    return list(getattr(job.input, name, []) or [])


def validate_planted(job: Job) -> None:
    """The interpretability results scored against the demo's planted truth:
    validation/planted.json, tables/planted.tsv and tables/planted_detectors.tsv. Optional
    inputs (their keys are null without them): cam_random, detectors_random,
    emergence_random (the analyses of an untrained network), emergence_truth (the
    emergence test on the planted values), aus_validation (validation/aus.tsv: which
    unplanted AUs are coupled), ceilings (tables/detector_ceilings.tsv), dumps (the face
    model's activation dumps: the detectors' correlation with their region's AU), accuracy
    (tables/accuracy.tsv, with manifest: the models' MAE ratios and the oracle controls),
    faces (with accuracy: the faces files, for the landmark ridge), dumps_random (with
    accuracy: the untrained face model's dumps, the control of the ridge on the units)."""
    folder = Path(job.input.ground_truth)
    truth_path = folder / "planted.json"
    truth = load_truth(truth_path)
    regions = signal_regions(truth)
    truth_frames = read_truth_frames(folder / "frames.tsv", regions)
    geometry = read_frame_geometry(list(job.input.frames))
    sizes = read_video_sizes(job.input.qc)
    threshold, min_overlap = float(job.params.threshold), float(job.params.min_overlap)
    alpha = float(job.params.alpha)
    coupling_r = float(job.params.coupling_r)

    def cam_result(path, controls=False):
        return cam_true_face_overlap(
            path, truth_frames, geometry, sizes, threshold, min_overlap, regions, controls
        )

    cam = cam_result(job.input.cam, controls=True)
    gradcam = cam_result(job.input.gradcam)
    cam_random_path = _optional_input(job, "cam_random")
    cam_random = cam_result(cam_random_path) if cam_random_path else None
    text = {"au": str, "layer": str}  # AU and layer names stay strings

    def detector_table(path):
        return read_table(path, "detectors", "find_detectors", DETECTOR_COLUMNS, text)

    def emergence_table(path):
        return read_table(
            path, "AU emergence", "find_au_detectors", ["au", "unit", "layer", "p"], text
        )

    def optional(name, reader):
        path = _optional_input(job, name)
        return reader(path) if path else None

    detectors = detector_table(job.input.detectors)
    emergence = emergence_table(job.input.emergence)
    null = read_table(job.input.null, "AU emergence null", "find_au_detectors", NULL_COLUMNS, text)
    validation = optional(
        "aus_validation",
        lambda p: read_table(p, "AU validation", "validate_aus", ["au", "cross_talk_r"], text),
    )
    ceilings = optional(
        "ceilings",
        lambda p: read_table(p, "detector ceilings", "find_detectors", CEILING_COLUMNS, text),
    )
    dumps = _optional_inputs(job, "dumps")
    accuracy_path = _optional_input(job, "accuracy")
    accuracy = None
    if accuracy_path:
        table = read_table(accuracy_path, "accuracy", "evaluate_models", ["model", "split", "mean"])
        truth_videos = read_table(
            folder / "videos.tsv", "ground-truth videos", "generate_demo", ["video_id"],
            {"video_id": str},
        ).set_index("video_id")  # fmt: skip
        manifest = job.input.manifest
        faces = _optional_inputs(job, "faces")
        units = {
            name: _unit_features(paths)
            for name, paths in (
                ("face_units_ridge", dumps),
                ("face_units_ridge_random_init", _optional_inputs(job, "dumps_random")),
            )
            if paths
        }
        accuracy = accuracy_ratios(
            table, truth_videos, read_labels(manifest), read_groups(manifest),
            job.params.alphas, float(job.params.default_alpha),
            landmarks=_landmark_features(faces) if faces else None, units=units,
        )  # fmt: skip
    detector_r = detector_au_correlations(detectors, dumps, truth_frames, truth) if dumps else None
    doc = score_planted(
        truth, cam, gradcam, detectors, emergence, null, threshold, min_overlap, alpha,
        cam_random=cam_random,
        detectors_random=optional("detectors_random", detector_table),
        emergence_random=optional("emergence_random", emergence_table),
        emergence_truth=optional("emergence_truth", emergence_table),
        validation=validation, coupling_r=coupling_r, ceilings=ceilings, detector_r=detector_r,
        accuracy=accuracy,
    )  # fmt: skip
    write_outputs(
        doc, job.output.json, job.output.table, getattr(job.output, "detectors", None), detector_r
    )
    for key, goal in doc["goals"].items():
        log.info("%s = %s (goal %s, met %s)", key, doc.get(key), goal["goal"], goal["met"])
    for note in doc["notes"]:
        log.info("note: %s", note)


def _landmark_features(paths: list[str]):
    """Each video's mean aligned landmarks over the faces files (accuracy_ceiling's
    landmark ridge)."""
    parts = [read_video_landmark_means(p) for p in paths]
    return landmark_features(
        [v for part in parts for v in part.video_ids],
        np.concatenate([part.means for part in parts]),
        np.concatenate([part.n_frames for part in parts]),
    )


def _unit_features(paths):
    """Each video's mean unit activations over the dumped layers (accuracy_ceiling's
    ridge on the network's own units)."""
    return unit_features(
        [
            (dump_info(p)["layer"], read_keys(p)["video_id"], read_reduction(p, "mean"))
            for p in paths
        ]
    )


def plot_planted(job: Job) -> None:
    """The planted-truth scorecard for the report: every goal of validation/planted.json,
    its value against the zone that meets it (traitlens.demo.planted_figure)."""
    from traitlens.demo import planted_figure

    planted_figure.plot_planted(planted_figure.read_planted(job.input.json), job.output.figure)
