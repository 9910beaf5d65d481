"""Snakemake entry: unit segmentation montage of one model's layer (rule
plot_unit_segmentation, wildcards model and layer; Zhou et al. ICLR'15).

Each shown unit is a row of its top images from the model's shard files, masked by its
receptive fields where its map exceeds the threshold (traitlens.interpret.unit_segmentation).
"""

from traitlens.core.errors import run_entry
from traitlens.interpret.unit_segmentation import plot_unit_segmentation


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    plot_unit_segmentation(
        sm.input.dump, list(sm.input.data), dict(sm.params.segmentation), sm.output.figure
    )


run_entry(main, snakemake.log[0])  # noqa: F821
