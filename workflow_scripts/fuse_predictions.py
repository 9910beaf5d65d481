"""Snakemake entry: late fusion of the image and audio predictions -> predictions.tsv."""

import logging

from traitlens.core.errors import run_entry
from traitlens.models.fusion import choose_image_weight, fuse
from traitlens.models.predictions import (
    PRODUCED_BY,
    read_labels,
    read_predictions,
    write_predictions,
)

log = logging.getLogger("traitlens.fuse_predictions")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    image = read_predictions(sm.input.image, PRODUCED_BY["img"])
    audio = read_predictions(sm.input.audio, PRODUCED_BY["audio"])
    weight = sm.params.image_weight
    if weight == "validation":
        weight, maes = choose_image_weight(image, audio, read_labels(sm.input.labels))
        log.info("validation MAE per image weight: %s", {w: round(m, 5) for w, m in maes.items()})
    fused, counts = fuse(image, audio, weight)
    log.info("image weight %g, audio weight %g", weight, 1 - weight)
    for split, c in counts.items():
        log.info("%s: %s", split, c.line())
    write_predictions(fused, sm.output.predictions)


run_entry(main, snakemake.log[0])  # noqa: F821
