"""Snakemake entry: per trait, the frames with the highest prediction with their class
activation map overlaid (METHOD.md 2), from cam/<source>.h5."""

from traitlens.cam import plot_cam_figures
from traitlens.errors import run_entry


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
