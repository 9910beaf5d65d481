"""Snakemake entry: estimated vs planted AUs -> validation/aus.tsv + figures/au_validation.png."""

import logging

from traitlens.aus.estimate_aus import write_tsv
from traitlens.core.errors import run_entry
from traitlens.demo.au_validation import scatter_figure, validate

log = logging.getLogger("traitlens.validate_aus")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    table, joined, planted = validate(list(sm.input.aus), sm.input.ground_truth)
    write_tsv(table, sm.output.table)
    scatter_figure(joined, table, planted, sm.output.figure)
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


run_entry(main, snakemake.log[0])  # noqa: F821
