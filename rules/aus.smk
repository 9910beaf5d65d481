# Action Unit intensities per shard, and (planted demo data) their validation against
# the planted truth.


rule estimate_aus:
    input:
        unpack(au_inputs),
    output:
        frames=f"{AU_ESTIMATES}/{{shard}}.tsv",
        videos=f"{AU_ESTIMATES}/{{shard}}.videos.tsv",
    log:
        f"{LOGS}/aus/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/aus/{{shard}}.tsv"
    conda:
        "../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        aus=shard_au_settings(),
    script:
        "../workflow_scripts/estimate_aus.py"


if PERSON_BASELINE:

    # Each person's low percentile over all of their frames, subtracted in every shard
    # (workflow_scripts/traitlens/aus/person_baseline.py). Seconds at First Impressions'
    # size: on a cluster it runs on the submitting host.
    rule calibrate_aus:
        input:
            frames=per_shard(f"{AU_ESTIMATES}/{{shard}}.tsv"),
            videos=per_shard(f"{AU_ESTIMATES}/{{shard}}.videos.tsv"),
            manifest=f"{RESULTS}/manifest.tsv",
        output:
            frames=per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
            videos=per_shard(f"{RESULTS}/aus/{{shard}}.videos.tsv"),
        log:
            f"{LOGS}/calibrate_aus.log",
        benchmark:
            f"{BENCHMARKS}/calibrate_aus.tsv"
        conda:
            "../envs/faces.yaml"
        resources:
            mem_mb=1000,
        params:
            percentile=config["aus"]["baseline_percentile"],
        script:
            "../workflow_scripts/calibrate_aus.py"

    localrules:
        calibrate_aus,


# On request only (not in rule all): one shard's AU table for py-feat users, loadable
# with feat.utils.io.read_feat as a Fex.
rule export_fex:
    input:
        aus=f"{RESULTS}/aus/{{shard}}.tsv",
    output:
        fex=f"{RESULTS}/aus/{{shard}}.fex.csv",
    log:
        f"{LOGS}/aus/{{shard}}.export_fex.log",
    benchmark:
        f"{BENCHMARKS}/aus/{{shard}}.export_fex.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../workflow_scripts/export_fex.py"


if DATASET["format"] == "demo":

    rule validate_aus:
        input:
            aus=per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
            # with the person baseline, the estimates before it too (uncalibrated_r)
            uncalibrated=(
                per_shard(f"{AU_ESTIMATES}/{{shard}}.tsv") if PERSON_BASELINE else []
            ),
            ground_truth=config["demo"]["ground_truth"],
        output:
            table=report(
                f"{RESULTS}/validation/aus.tsv",
                caption="../report/au_validation_table.rst",
                category="5. Action Units",
            ),
            figure=report(
                f"{RESULTS}/figures/au_validation.png",
                caption="../report/au_validation.rst",
                category="5. Action Units",
            ),
        log:
            f"{LOGS}/validate_aus.log",
        benchmark:
            f"{BENCHMARKS}/validate_aus.tsv"
        conda:
            "../envs/faces.yaml"
        script:
            "../workflow_scripts/validate_aus.py"

    rule planted_au_table:
        input:
            aus=per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
            ground_truth=config["demo"]["ground_truth"],
        output:
            table=f"{RESULTS}/validation/planted_aus.tsv",
        log:
            f"{LOGS}/planted_au_table.log",
        benchmark:
            f"{BENCHMARKS}/planted_au_table.tsv"
        conda:
            "../envs/analysis.yaml"
        script:
            "../workflow_scripts/planted_au_table.py"

    # tables of the demo's truth, seconds: run on the submitting host of a cluster
    localrules:
        validate_aus,
        planted_au_table,
