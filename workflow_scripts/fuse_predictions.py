"""Snakemake entry: late fusion of the image and audio predictions -> predictions.tsv."""

import logging

from traitlens.errors import run_entry
from traitlens.fusion import fuse
from traitlens.predictions import read_predictions, write_predictions

log = logging.getLogger("traitlens.fuse_predictions")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    image = read_predictions(sm.input.image, "the predict_visual rule")
    audio = read_predictions(sm.input.audio, "the train_audio_model rule")
    fused, counts = fuse(image, audio, sm.params.image_weight)
    log.info("image weight %g, audio weight %g", sm.params.image_weight, 1 - sm.params.image_weight)
    for split, c in counts.items():
        log.info("%s: %s", split, c.line())
    write_predictions(fused, sm.output.predictions)


run_entry(main, snakemake.log[0])  # noqa: F821
