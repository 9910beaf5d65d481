"""Rules of the extraction stage (rules/extract.smk): one function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``.
"""

from __future__ import annotations

from traitlens.core.errors import Job
from traitlens.extract.audio_features import AudioParams
from traitlens.extract.extract_shard import extract_shard as extract_shard_videos


def extract_shard(job: Job) -> None:
    """Frames and audio features of one shard's videos, and its QC table; ffmpeg decodes on
    the job's threads."""
    video_ids = list(job.params.video_ids)
    paths = list(job.input.videos)
    if len(video_ids) != len(paths):
        raise ValueError(f"{len(video_ids)} video ids for {len(paths)} video paths")
    extract_shard_videos(
        list(zip(video_ids, paths, strict=True)),
        frames_out=job.output.frames,
        audio_out=job.output.audio,
        qc_out=job.output.qc,
        frames_per_video=int(job.params.frames_per_video),
        frame_width=int(job.params.frame_width),
        frame_height=int(job.params.frame_height),
        audio=AudioParams(**dict(job.params.audio)),
        threads=job.threads,
    )
