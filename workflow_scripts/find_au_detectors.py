"""Snakemake entry: AU-detector emergence over the face model's units (docs/method.md §5) ->
tables/au_emergence.tsv, tables/au_emergence_null.tsv, figures/au_emergence.png."""

import logging

import pandas as pd

from traitlens.aus.estimate_aus import read_frame_table
from traitlens.core.errors import UserError, run_entry
from traitlens.interpret.au_emergence import (
    au_unit_frames,
    emergence_table,
    null_table,
    plot_emergence,
    top_n_masks,
    write_table,
)

log = logging.getLogger("traitlens.find_au_detectors")


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    cfg = dict(sm.params.au_emergence)
    try:
        aus = list(cfg["aus"])
        n_top, alpha = int(cfg["n_top"]), float(cfg["alpha"])
        n_permutations, seed = int(cfg["n_permutations"]), int(cfg["seed"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"config analysis.au_emergence: missing or bad key ({err})") from None
    au_tables = pd.concat([read_frame_table(p) for p in sm.input.aus], ignore_index=True)
    au_values, unit_max, labels, videos = au_unit_frames(list(sm.input.dumps), au_tables, aus)
    log.info("%d frames x %d units (%d layers), %d AUs", *unit_max.shape,
             len({layer for layer, _ in labels}), len(aus))  # fmt: skip
    masks = top_n_masks(au_values, unit_max, n_top, seed)  # once for the table and both nulls
    table = emergence_table(au_values, unit_max, labels, aus, n_top, seed, masks)
    null = null_table(au_values, unit_max, aus, n_top, alpha, n_permutations, seed, masks=masks)
    # the same null with frames shuffled only within their video: what survives it is
    # tied to the videos (their AU level, their person), not to frame-level co-activation
    within = null_table(
        au_values, unit_max, aus, n_top, alpha, n_permutations, seed, groups=videos, masks=masks
    )
    null["false_positive_rate_within_video"] = within["false_positive_rate"].to_numpy()
    write_table(table, sm.output.table)
    write_table(null, sm.output.null)
    plot_emergence(table, null, alpha, sm.output.figure)
    rate = dict(zip(null["au"], null["false_positive_rate"], strict=True))
    for row in table.itertuples():
        log.info(
            "%s best %s#%d I_max=%d (expected %.1f) log10 p=%.2f null rate=%.3f %s",
            row.au, row.layer, row.unit, row.i_max, row.expected_overlap, row.log10_p,
            rate.get(row.au, float("nan")), row.note,
        )  # fmt: skip
    log.info("null false-positive rate over all AUs: %.4f (alpha %g)", rate["all"], alpha)


run_entry(main, snakemake.log[0])  # noqa: F821
