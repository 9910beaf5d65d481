# Interpretability analyses (docs/method.md §2, 4, 5), in the order of the paper: CAM and its
# overlap with the face, unit segmentations, semantic detectors, AU-detector emergence,
# and (demo data set) the scores against the planted truth.


rule compute_cam:
    input:
        unpack(cam_inputs),
    output:
        cam=f"{RESULTS}/cam/{{source}}.h5",
    log:
        f"{LOGS}/compute_cam/{{source}}.log",
    benchmark:
        f"{BENCHMARKS}/compute_cam/{{source}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
        mem_mb=4000,
    params:
        method=lambda wildcards: (
            "gradcam" if wildcards.source.endswith("gradcam") else "cam"
        ),
        split=ANALYSIS["cam"]["split"],
        amp=config["train"]["amp"],
    script:
        "../workflow_scripts/compute_cam.py"


rule plot_cam:
    input:
        cam=f"{RESULTS}/cam/{{source}}.h5",
        data=cam_data,
    output:
        figures=report(
            cam_figures("{source}"),
            caption="../report/cam.rst",
            category="2. Discriminative regions (CAM)",
            subcategory="{source}",
        ),
    log:
        f"{LOGS}/plot_cam/{{source}}.log",
    benchmark:
        f"{BENCHMARKS}/plot_cam/{{source}}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        n_frames=ANALYSIS["cam"]["n_frames"],
        alpha=ANALYSIS["cam"]["alpha"],
    script:
        "../workflow_scripts/plot_cam.py"


rule cam_face_overlap:
    input:
        cams=[f"{RESULTS}/cam/{source}.h5" for source in FRAME_CAM_SOURCES],
        faces=per_shard(f"{RESULTS}/faces/{{shard}}.h5"),
        frames=per_shard(f"{RESULTS}/frames/{{shard}}.h5"),
    output:
        table=f"{RESULTS}/tables/cam_face_overlap.tsv",
        summary=report(
            f"{RESULTS}/tables/cam_face_overlap_summary.tsv",
            caption="../report/cam_face_overlap_summary.rst",
            category="2. Discriminative regions (CAM)",
            subcategory="overlap with the face",
        ),
        figure=report(
            f"{RESULTS}/figures/cam_face_overlap.png",
            caption="../report/cam_face_overlap.rst",
            category="2. Discriminative regions (CAM)",
            subcategory="overlap with the face",
        ),
    log:
        f"{LOGS}/cam_face_overlap.log",
    benchmark:
        f"{BENCHMARKS}/cam_face_overlap.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: ANALYSIS["threads"]
    params:
        threshold=ANALYSIS["cam"]["threshold"],
        min_overlap=ANALYSIS["cam"]["min_overlap"],
    script:
        "../workflow_scripts/cam_face_overlap.py"


rule plot_unit_segmentation:
    input:
        dump=f"{RESULTS}/activations/{{model}}/{{layer}}.h5",
        data=visual_inputs,
    output:
        figure=report(
            f"{RESULTS}/figures/units_{{model}}_{{layer}}.png",
            caption="../report/unit_segmentation.rst",
            category="4. Interpretability of the face CNN",
            subcategory="unit segmentation",
        ),
    log:
        f"{LOGS}/plot_unit_segmentation/{{model}}_{{layer}}.log",
    benchmark:
        f"{BENCHMARKS}/plot_unit_segmentation/{{model}}_{{layer}}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        segmentation=ANALYSIS["segmentation"],
    script:
        "../workflow_scripts/plot_unit_segmentation.py"


rule find_detectors:
    input:
        dumps=dumps("face"),
        template=f"{RESULTS}/faces/template.h5",
        faces=per_shard(f"{RESULTS}/faces/{{shard}}.h5"),
    output:
        table=report(
            f"{RESULTS}/tables/detectors.tsv",
            caption="../report/detectors.rst",
            category="4. Interpretability of the face CNN",
            subcategory="semantic detectors",
        ),
        counts=report(
            f"{RESULTS}/tables/detector_counts.tsv",
            caption="../report/detector_counts.rst",
            category="4. Interpretability of the face CNN",
            subcategory="semantic detectors",
        ),
        ceilings=f"{RESULTS}/tables/detector_ceilings.tsv",
        histograms=report(
            [
                f"{RESULTS}/figures/unit_histograms_{layer}.png"
                for layer in DUMP_LAYERS
            ],
            caption="../report/unit_histograms.rst",
            category="4. Interpretability of the face CNN",
            subcategory="spatial histograms",
        ),
        montages=report(
            [f"{RESULTS}/figures/detectors_{region}.png" for region in REGION_NAMES],
            caption="../report/detector_montage.rst",
            category="4. Interpretability of the face CNN",
            subcategory="semantic detectors",
        ),
    log:
        f"{LOGS}/find_detectors.log",
    benchmark:
        f"{BENCHMARKS}/find_detectors.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        layers=DUMP_LAYERS,
        detectors=ANALYSIS["detectors"],
        segmentation=ANALYSIS["segmentation"],
    script:
        "../workflow_scripts/find_detectors.py"


use rule find_detectors as find_detectors_random_init with:
    input:
        dumps=dumps(f"face{RANDOM_INIT}"),
        template=f"{RESULTS}/faces/template.h5",
        faces=per_shard(f"{RESULTS}/faces/{{shard}}.h5"),
    output:
        table=f"{RESULTS}/controls/random_init/detectors.tsv",
        counts=f"{RESULTS}/controls/random_init/detector_counts.tsv",
        ceilings=f"{RESULTS}/controls/random_init/detector_ceilings.tsv",
        histograms=[
            f"{RESULTS}/controls/random_init/unit_histograms_{layer}.png"
            for layer in DUMP_LAYERS
        ],
        montages=[
            f"{RESULTS}/controls/random_init/detectors_{region}.png"
            for region in REGION_NAMES
        ],
    log:
        f"{LOGS}/find_detectors_random_init.log",
    benchmark:
        f"{BENCHMARKS}/find_detectors_random_init.tsv"


rule find_au_detectors:
    input:
        dumps=dumps("face"),
        aus=per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
        manifest=f"{RESULTS}/manifest.tsv",  # each video's group (person)
    output:
        table=report(
            f"{RESULTS}/tables/au_emergence.tsv",
            caption="../report/au_emergence_table.rst",
            category="5. Action Units",
            subcategory="emergence of AU detectors",
        ),
        null=report(
            f"{RESULTS}/tables/au_emergence_null.tsv",
            caption="../report/au_emergence_null_table.rst",
            category="5. Action Units",
            subcategory="emergence of AU detectors",
        ),
        figure=report(
            f"{RESULTS}/figures/au_emergence.png",
            caption="../report/au_emergence.rst",
            category="5. Action Units",
            subcategory="emergence of AU detectors",
        ),
    log:
        f"{LOGS}/find_au_detectors.log",
    benchmark:
        f"{BENCHMARKS}/find_au_detectors.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        au_emergence=ANALYSIS["au_emergence"],
    script:
        "../workflow_scripts/find_au_detectors.py"


# The controls (docs/validation.md): the AU-emergence test on the untrained network's units,
# and (demo) on the planted AU values instead of the estimates
use rule find_au_detectors as find_au_detectors_random_init with:
    input:
        dumps=dumps(f"face{RANDOM_INIT}"),
        aus=per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
        manifest=f"{RESULTS}/manifest.tsv",
    output:
        table=f"{RESULTS}/controls/random_init/au_emergence.tsv",
        null=f"{RESULTS}/controls/random_init/au_emergence_null.tsv",
        figure=f"{RESULTS}/controls/random_init/au_emergence.png",
    log:
        f"{LOGS}/find_au_detectors_random_init.log",
    benchmark:
        f"{BENCHMARKS}/find_au_detectors_random_init.tsv"


if DATASET["format"] == "demo":

    use rule find_au_detectors as find_planted_au_detectors with:
        input:
            dumps=dumps("face"),
            aus=[f"{RESULTS}/validation/planted_aus.tsv"],
            manifest=f"{RESULTS}/manifest.tsv",
        output:
            table=f"{RESULTS}/controls/planted_aus/au_emergence.tsv",
            null=f"{RESULTS}/controls/planted_aus/au_emergence_null.tsv",
            figure=f"{RESULTS}/controls/planted_aus/au_emergence.png",
        log:
            f"{LOGS}/find_planted_au_detectors.log",
        benchmark:
            f"{BENCHMARKS}/find_planted_au_detectors.tsv"

    # cam_random, detectors_random, emergence_random (the untrained network's) and
    # emergence_truth (the test on the planted values) are optional to the rule's code:
    # without them their keys are null
    rule validate_planted:
        input:
            cam_random=f"{RESULTS}/cam/img{RANDOM_INIT}.h5",
            detectors_random=f"{RESULTS}/controls/random_init/detectors.tsv",
            emergence_random=f"{RESULTS}/controls/random_init/au_emergence.tsv",
            emergence_truth=f"{RESULTS}/controls/planted_aus/au_emergence.tsv",
            ground_truth=config["demo"]["ground_truth"],
            qc=f"{RESULTS}/qc/videos.tsv",
            frames=per_shard(f"{RESULTS}/frames/{{shard}}.h5"),
            cam=f"{RESULTS}/cam/img.h5",
            gradcam=f"{RESULTS}/cam/img_gradcam.h5",
            detectors=f"{RESULTS}/tables/detectors.tsv",
            emergence=f"{RESULTS}/tables/au_emergence.tsv",
            null=f"{RESULTS}/tables/au_emergence_null.tsv",
            aus_validation=f"{RESULTS}/validation/aus.tsv",
            ceilings=f"{RESULTS}/tables/detector_ceilings.tsv",
            dumps=dumps("face"),
            # the ridge on the units: the untrained network's are its negative control
            dumps_random=dumps(f"face{RANDOM_INIT}"),
            accuracy=f"{RESULTS}/tables/accuracy.tsv",
            manifest=f"{RESULTS}/manifest.tsv",
            # the landmark ridge: what a linear reader gets from the faces' geometry
            faces=per_shard(f"{RESULTS}/faces/{{shard}}.h5"),
        output:
            json=f"{RESULTS}/validation/planted.json",
            table=report(
                f"{RESULTS}/tables/planted.tsv",
                caption="../report/planted.rst",
                category="6. Scored against the planted truth",
            ),
            detectors=f"{RESULTS}/tables/planted_detectors.tsv",
        log:
            f"{LOGS}/validate_planted.log",
        benchmark:
            f"{BENCHMARKS}/validate_planted.tsv"
        conda:
            "../envs/analysis.yaml"
        params:
            threshold=ANALYSIS["cam"]["threshold"],
            min_overlap=ANALYSIS["cam"]["min_overlap"],
            alpha=ANALYSIS["au_emergence"]["alpha"],
            coupling_r=ANALYSIS["planted"]["coupling_r"],
            # the oracle controls fit the AU model's ridge (models.aus)
            alphas=config["models"]["aus"]["alphas"],
            default_alpha=config["models"]["aus"]["default_alpha"],
        script:
            "../workflow_scripts/validate_planted.py"


# --- the report's own figures and pages (snakemake --report; report/workflow.rst) -------
# Cheap summaries of tables the rules above write, so they run on the submitting host; so
# do the figures of a few frames or units (seconds and about 650 MB at any data set size).


localrules:
    report_qc,
    plot_comparisons,
    plot_emergence_null,
    plot_cam,
    plot_unit_segmentation,


rule report_qc:
    input:
        videos=f"{RESULTS}/qc/videos.tsv",
        faces=per_shard(f"{RESULTS}/qc/faces/{{shard}}.tsv"),
        ingest=f"{RESULTS}/qc/ingest.tsv",
    output:
        faces=report(
            f"{RESULTS}/qc/faces.tsv",
            caption="../report/qc_faces.rst",
            category="0. Quality control",
        ),
        figure=report(
            f"{RESULTS}/figures/qc.png",
            caption="../report/qc_figure.rst",
            category="0. Quality control",
        ),
        page=report(
            f"{RESULTS}/qc/summary.html",
            caption="../report/qc_summary.rst",
            category="0. Quality control",
        ),
    log:
        f"{LOGS}/report_qc.log",
    benchmark:
        f"{BENCHMARKS}/report_qc.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/report_qc.py"


rule plot_comparisons:
    input:
        comparisons=f"{RESULTS}/tables/comparisons.tsv",
    output:
        figure=report(
            f"{RESULTS}/figures/comparisons.png",
            caption="../report/comparisons_figure.rst",
            category="1. Models",
            subcategory="accuracy",
        ),
    log:
        f"{LOGS}/plot_comparisons.log",
    benchmark:
        f"{BENCHMARKS}/plot_comparisons.tsv"
    conda:
        "../envs/core.yaml"
    params:
        confidence=config["evaluation"]["confidence"],
    script:
        "../workflow_scripts/plot_comparisons.py"


rule plot_emergence_null:
    input:
        null=f"{RESULTS}/tables/au_emergence_null.tsv",
    output:
        figure=report(
            f"{RESULTS}/figures/au_emergence_null.png",
            caption="../report/au_emergence_null.rst",
            category="5. Action Units",
            subcategory="emergence of AU detectors",
        ),
    log:
        f"{LOGS}/plot_emergence_null.log",
    benchmark:
        f"{BENCHMARKS}/plot_emergence_null.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        alpha=ANALYSIS["au_emergence"]["alpha"],
        confidence=config["evaluation"]["confidence"],
    script:
        "../workflow_scripts/plot_emergence_null.py"


if DATASET["format"] == "demo":

    rule plot_planted:
        input:
            json=f"{RESULTS}/validation/planted.json",
        output:
            figure=report(
                f"{RESULTS}/figures/planted.png",
                caption="../report/planted_figure.rst",
                category="6. Scored against the planted truth",
            ),
        log:
            f"{LOGS}/plot_planted.log",
        benchmark:
            f"{BENCHMARKS}/plot_planted.tsv"
        conda:
            "../envs/analysis.yaml"
        script:
            "../workflow_scripts/plot_planted.py"

    localrules:
        plot_planted,


# What rule all asks for the report alone; the emergence nulls' figure and (demo) the
# planted-truth scorecard when the face model's units are analysed
REPORT_OUTPUTS = [
    f"{RESULTS}/qc/faces.tsv",
    f"{RESULTS}/figures/qc.png",
    f"{RESULTS}/qc/summary.html",
    f"{RESULTS}/figures/comparisons.png",
    *(
        [f"{RESULTS}/figures/au_emergence_null.png"]
        if "face" in ACTIVATIONS["models"]
        else []
    ),
    *(
        [f"{RESULTS}/figures/planted.png"]
        if "face" in ACTIVATIONS["models"] and DATASET["format"] == "demo"
        else []
    ),
]
