"""Snakemake entry: faces (detection, landmarks, aligned crops) of one shard's frames."""

from traitlens.core.errors import run_entry
from traitlens.faces.detect_faces import detect_faces_shard
from traitlens.faces.video_faces import FaceParams


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    detect_faces_shard(
        sm.input.frames,
        faces_out=sm.output.faces,
        qc_out=sm.output.qc,
        params=FaceParams.from_mapping(sm.params.faces),
    )


run_entry(main, snakemake.log[0])  # noqa: F821
