"""Snakemake entry: frames and audio features of one shard's videos, plus its QC table."""

from traitlens.core.errors import run_entry
from traitlens.extract.audio_features import AudioParams
from traitlens.extract.extract_shard import extract_shard


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    video_ids = list(sm.params.video_ids)
    paths = list(sm.input.videos)
    if len(video_ids) != len(paths):
        raise ValueError(f"{len(video_ids)} video ids for {len(paths)} video paths")
    extract_shard(
        list(zip(video_ids, paths, strict=True)),
        frames_out=sm.output.frames,
        audio_out=sm.output.audio,
        qc_out=sm.output.qc,
        frames_per_video=int(sm.params.frames_per_video),
        frame_width=int(sm.params.frame_width),
        frame_height=int(sm.params.frame_height),
        audio=AudioParams(**dict(sm.params.audio)),
        threads=sm.threads,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
