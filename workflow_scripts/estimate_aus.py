"""Snakemake entry: AU intensities of one shard's faces -> aus/<shard>.tsv (+ .videos.tsv)."""

from traitlens.aus.estimate_aus import AuConfig, estimate_shard, write_tsv
from traitlens.core.errors import run_entry
from traitlens.core.faults import kill_point


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    cfg = AuConfig.from_mapping(dict(sm.params.aus))
    frames_path = sm.input.get("frames")  # only the detector backend reads the frames
    frames, videos = estimate_shard(sm.input.faces, cfg, frames_path)
    write_tsv(frames, sm.output.frames)
    kill_point("estimate_aus")  # one output written, the other not
    write_tsv(videos, sm.output.videos)


run_entry(main, snakemake.log[0])  # noqa: F821
