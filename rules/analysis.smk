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


rule find_au_detectors:
    input:
        dumps=dumps("face"),
        aus=per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
    output:
        table=report(
            f"{RESULTS}/tables/au_emergence.tsv",
            caption="../report/au_emergence_table.rst",
            category="5. Action Units",
            subcategory="emergence of AU detectors",
        ),
        null=f"{RESULTS}/tables/au_emergence_null.tsv",
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


if DATASET["format"] == "demo":

    rule validate_planted:
        input:
            ground_truth=config["demo"]["ground_truth"],
            qc=f"{RESULTS}/qc/videos.tsv",
            frames=per_shard(f"{RESULTS}/frames/{{shard}}.h5"),
            cam=f"{RESULTS}/cam/img.h5",
            gradcam=f"{RESULTS}/cam/img_gradcam.h5",
            detectors=f"{RESULTS}/tables/detectors.tsv",
            emergence=f"{RESULTS}/tables/au_emergence.tsv",
            null=f"{RESULTS}/tables/au_emergence_null.tsv",
        output:
            json=f"{RESULTS}/validation/planted.json",
            table=report(
                f"{RESULTS}/tables/planted.tsv",
                caption="../report/planted.rst",
                category="6. Scored against the planted truth",
            ),
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
        script:
            "../workflow_scripts/validate_planted.py"
