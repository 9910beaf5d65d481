# Extraction per shard: evenly spaced frames and log mel audio features (ffmpeg).


rule extract_shard:
    input:
        videos=shard_video_paths,
    output:
        frames=f"{RESULTS}/frames/{{shard}}.h5",
        audio=f"{RESULTS}/audio/{{shard}}.h5",
        qc=f"{RESULTS}/qc/shards/{{shard}}.tsv",
    log:
        f"{LOGS}/extract/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/extract/{{shard}}.tsv"
    conda:
        "../envs/extract.yaml"
    threads: 2
    resources:
        mem_mb=2000,
    params:
        video_ids=shard_video_ids,
        frames_per_video=config["extract"]["frames_per_video"],
        frame_width=config["extract"]["frame_width"],
        frame_height=config["extract"]["frame_height"],
        audio=config["extract"]["audio"],
    script:
        "../workflow_scripts/extract_shard.py"


rule summarise_qc:
    input:
        shards=per_shard(f"{RESULTS}/qc/shards/{{shard}}.tsv"),
        faces=per_shard(f"{RESULTS}/qc/faces/{{shard}}.tsv"),
    output:
        videos=report(
            f"{RESULTS}/qc/videos.tsv",
            caption="../report/qc_videos.rst",
            category="0. Quality control",
        ),
    log:
        f"{LOGS}/summarise_qc.log",
    benchmark:
        f"{BENCHMARKS}/summarise_qc.tsv"
    conda:
        "../envs/core.yaml"
    params:
        max_failed_fraction=config["extract"]["max_failed_fraction"],
    script:
        "../workflow_scripts/summarise_qc.py"


# Seconds at First Impressions' size (tables, a few images): on a cluster they run on the
# submitting host, as a job each would wait in the queue longer than it runs.
localrules:
    summarise_qc,
