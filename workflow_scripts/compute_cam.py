"""Snakemake entry: class activation maps of one model on the frames of one split.

Wildcard ``source``: img | face (CAM of the CAM-variant models img_cam / face_cam) or
img_gradcam (Grad-CAM of the DAN+ img model); ``params.method`` (cam | gradcam) says
which. Writes cam/<source>.h5 (traitlens.interpret.cam.CAM_SCHEMA).
"""

from traitlens.core.errors import run_entry
from traitlens.interpret.cam import compute_cam_file
from traitlens.models.predictions import read_labels
from traitlens.models.visual_model import RunConfig


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    compute_cam_file(
        source=sm.wildcards.source,
        method=sm.params.method,
        weights=sm.input.weights,
        labels=read_labels(sm.input.labels),
        data=list(sm.input.data),
        split=sm.params.split,
        batch_size=int(sm.params.batch_size),
        run=RunConfig.from_mapping({**sm.params.run, "threads": sm.threads}),
        out=sm.output.cam,
        layer=getattr(sm.params, "layer", "conv5_3"),  # Grad-CAM's layer; optional
    )


run_entry(main, snakemake.log[0])  # noqa: F821
