# The data set: the generated demo (format demo) and ingest into the manifest.


if DATASET["format"] == "demo":

    rule generate_demo:
        output:
            videos=[VIDEO_PATH[v] for v in sorted(VIDEO_PATH)],
            training=DATASET["annotations"]["training"],
            validation=DATASET["annotations"]["validation"],
            test=DATASET["annotations"]["test"],
            ground_truth=directory(config["demo"]["ground_truth"]),
        log:
            f"{LOGS}/generate_demo.log",
        benchmark:
            f"{BENCHMARKS}/generate_demo.tsv"
        conda:
            "../envs/faces.yaml"
        threads: 2
        params:
            demo=config["demo"],
            video_ids=sorted(VIDEO_PATH),
        script:
            "../workflow_scripts/generate_demo.py"


rule build_manifest:
    input:
        unpack(label_inputs),
    output:
        manifest=f"{RESULTS}/manifest.tsv",
        unmatched=report(
            f"{RESULTS}/qc/ingest.tsv",
            caption="../report/qc_ingest.rst",
            category="0. Quality control",
        ),
    log:
        f"{LOGS}/build_manifest.log",
    benchmark:
        f"{BENCHMARKS}/build_manifest.tsv"
    conda:
        "../envs/core.yaml"
    params:
        format=DATASET["format"],
        videos=video_table(),
        on_unmatched=config["ingest"]["on_unmatched"],
        paths_outside=DATASET.get("manifest_paths_outside", False),
    script:
        "../workflow_scripts/build_manifest.py"


# Seconds at First Impressions' size (tables, a few images): on a cluster they run on the
# submitting host, as a job each would wait in the queue longer than it runs.
localrules:
    build_manifest,
