"""Rules of the Action Unit stage (rules/aus.smk): one function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``.
"""

from __future__ import annotations

from traitlens.aus.estimate_aus import (
    AuConfig,
    estimate_shard,
    read_frame_table,
    read_video_table,
    write_tsv,
)
from traitlens.aus.fex_export import write_fex_csv
from traitlens.aus.person_baseline import calibrate_frames, calibrated_videos
from traitlens.core.errors import Job
from traitlens.core.faults import kill_point
from traitlens.ingest.manifest import read_groups

# Where and in what batches the detector backend runs: read from the config, not params,
# since they do not change the AUs (a change re-runs nothing)
RUN_KEYS = ("detector_batch", "detector_device")


def estimate_aus(job: Job) -> None:
    """AU intensities of one shard's faces: aus/<shard>.tsv per frame, .videos.tsv per video."""
    run = {k: job.config["aus"][k] for k in RUN_KEYS if k in job.config["aus"]}
    cfg = AuConfig.from_mapping({**job.params.aus, **run})
    frames_path = job.input.get("frames")  # only the detector backend reads the frames
    frames, videos = estimate_shard(job.input.faces, cfg, frames_path)
    write_tsv(frames, job.output.frames)
    kill_point("estimate_aus")  # one output written, the other not
    write_tsv(videos, job.output.videos)


def calibrate_aus(job: Job) -> None:
    """The person baseline over every shard (config ``aus.baseline: person``):
    aus/uncalibrated/<shard>.tsv -> aus/<shard>.tsv and .videos.tsv, shard for shard."""
    frames = [read_frame_table(p) for p in job.input.frames]
    groups = read_groups(job.input.manifest)
    calibrated = calibrate_frames(frames, groups, float(job.params.percentile), job.input.manifest)
    for table, videos_in, frames_out, videos_out in zip(
        calibrated, job.input.videos, job.output.frames, job.output.videos, strict=True
    ):
        write_tsv(table, frames_out)
        write_tsv(calibrated_videos(table, read_video_table(videos_in)), videos_out)


def export_fex(job: Job) -> None:
    """One shard's AU frame table in py-feat's Fex layout: aus/<shard>.fex.csv."""
    write_fex_csv(read_frame_table(job.input.aus), job.output.fex)
