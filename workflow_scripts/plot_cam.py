"""Snakemake entry: per trait, the frames with the highest prediction with their class
activation map overlaid (docs/method.md §2), from cam/<source>.h5."""

from traitlens.core.errors import run_entry
from traitlens.interpret.cam import plot_cam_figures


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    plot_cam_figures(
        sm.input.cam,
        list(sm.input.data),
        list(sm.output.figures),  # one per trait, in TRAIT_ORDER
        int(sm.params.n_frames),
        float(sm.params.alpha),
    )


run_entry(main, snakemake.log[0])  # noqa: F821
