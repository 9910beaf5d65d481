"""Snakemake entry: generate the planted-signal demo data set (rule generate_demo).

Reads ``params.demo`` (the ``demo:`` config section) and writes ``output.videos`` (one
mp4 per planned id), the three annotation pickles and the ground-truth directory.
"""

import logging
import os

from traitlens.core.errors import UserError, run_entry
from traitlens.demo.generate import generate

log = logging.getLogger("traitlens.generate_demo")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    out = sm.output
    planned = sorted(os.path.basename(p)[: -len(".mp4")] for p in out.videos)
    if sorted(sm.params.get("video_ids", planned)) != planned:
        raise UserError("generate_demo: params.video_ids and output.videos disagree")
    summary = generate(
        dict(sm.params.demo),
        list(out.videos),
        {"training": out.training, "validation": out.validation, "test": out.test},
        out.ground_truth,
        threads=max(1, int(sm.threads)),
    )
    log.info("demo data set: %(videos)d videos in %(seconds).1f s", summary)


# Spawned pool workers re-import this file as __mp_main__: they must not run main().
if __name__ != "__mp_main__":
    run_entry(main, snakemake.log[0])  # noqa: F821
