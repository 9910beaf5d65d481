"""Snakemake entry: the interpretability results scored against the demo's planted truth ->
validation/planted.json + tables/planted.tsv."""

import logging
from pathlib import Path

from traitlens.core.errors import UserError, run_entry
from traitlens.core.tables import read_table
from traitlens.demo.planted import (
    cam_true_face_overlap,
    config_video_sizes,
    load_truth,
    read_frame_geometry,
    read_truth_frames,
    read_video_sizes,
    score_planted,
    write_outputs,
)
from traitlens.interpret.au_emergence import NULL_COLUMNS

log = logging.getLogger("traitlens.validate_planted")
DETECTOR_COLUMNS = ("layer", "unit", "region", "histogram_detector", "netdissect_detector")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    # either the ground-truth folder, or its two files named one by one
    folder = sm.input.get("ground_truth")
    if folder is None and not (sm.input.get("truth") and sm.input.get("truth_frames")):
        raise UserError(
            "validate_planted: give input ground_truth (the folder) or truth and truth_frames"
        )
    truth_path = sm.input.get("truth") or Path(folder) / "planted.json"
    frames_path = sm.input.get("truth_frames") or Path(folder) / "frames.tsv"
    truth = load_truth(truth_path)
    truth_frames = read_truth_frames(frames_path)
    geometry = read_frame_geometry(list(sm.input.frames))
    qc = sm.input.get("qc")
    sizes = (
        read_video_sizes(qc)
        if qc
        else config_video_sizes(truth, list(geometry["video_id"]), str(truth_path))
    )
    threshold, min_overlap = float(sm.params.threshold), float(sm.params.min_overlap)
    alpha = float(sm.params.alpha)
    cams = {
        name: cam_true_face_overlap(path, truth_frames, geometry, sizes, threshold, min_overlap)
        for name, path in (("cam", sm.input.cam), ("gradcam", sm.input.gradcam))
    }
    text = {"au": str, "layer": str}  # AU and layer names stay strings
    detectors = read_table(
        sm.input.detectors, "detectors", "find_detectors", DETECTOR_COLUMNS, text
    )
    emergence = read_table(
        sm.input.emergence, "AU emergence", "find_au_detectors", ["au", "unit", "layer", "p"], text
    )
    null = read_table(sm.input.null, "AU emergence null", "find_au_detectors", NULL_COLUMNS, text)
    goals = sm.params.get("goals") if hasattr(sm.params, "get") else None
    doc = score_planted(
        truth, cams["cam"], cams["gradcam"], detectors, emergence, null,
        threshold, min_overlap, alpha, goals,
    )  # fmt: skip
    write_outputs(doc, sm.output.json, sm.output.table)
    for key, goal in doc["goals"].items():
        log.info("%s = %s (goal %s, met %s)", key, doc.get(key), goal["goal"], goal["met"])
    for note in doc["notes"]:
        log.info("note: %s", note)


run_entry(main, snakemake.log[0])  # noqa: F821
