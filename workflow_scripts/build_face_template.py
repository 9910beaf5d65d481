"""Snakemake entry: the semantic face template (mean landmarks, region masks, figure)."""

from traitlens.core.errors import run_entry
from traitlens.faces.face_template import build_face_template
from traitlens.faces.video_faces import FaceParams


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    params = FaceParams.from_mapping(sm.params.faces)
    build_face_template(
        list(sm.input.faces),
        template_out=sm.output.template,
        figure_out=sm.output.figure,
        dilation_px=params.region_dilation_px,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
