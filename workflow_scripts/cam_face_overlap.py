"""Snakemake entry: how much of each binarised CAM / Grad-CAM lies on the detected face
(docs/method.md §2): per-frame table, summary per source and trait, histogram."""

import torch

from traitlens.core.errors import run_entry
from traitlens.interpret.cam import face_overlap_table, overlap_histogram, write_overlap_tables
from traitlens.interpret.cam_face_overlap import overlap_summary


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    torch.set_num_threads(max(1, sm.threads))  # the upsampling runs in torch
    table = face_overlap_table(
        list(sm.input.cams), list(sm.input.faces), list(sm.input.frames), sm.params.threshold
    )
    summary = overlap_summary(table, sm.params.min_overlap)
    write_overlap_tables(table, summary, sm.output.table, sm.output.summary)
    overlap_histogram(table, sm.params.min_overlap, sm.output.figure)


run_entry(main, snakemake.log[0])  # noqa: F821
