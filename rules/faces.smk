# Faces per shard (mediapipe detection, 478-landmark mesh, eye alignment) and the
# semantic face template (mean aligned face, eyebrow / eye / nose / mouth masks).


rule detect_faces:
    input:
        frames=f"{RESULTS}/frames/{{shard}}.h5",
    output:
        faces=f"{RESULTS}/faces/{{shard}}.h5",
        qc=f"{RESULTS}/qc/faces/{{shard}}.tsv",
    log:
        f"{LOGS}/faces/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/faces/{{shard}}.tsv"
    conda:
        "../envs/faces.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        # region_dilation_px shapes the template's masks only
        faces=result_settings(config["faces"], "region_dilation_px"),
    script:
        "../workflow_scripts/detect_faces.py"


rule build_face_template:
    input:
        faces=per_shard(f"{RESULTS}/faces/{{shard}}.h5"),
    output:
        template=f"{RESULTS}/faces/template.h5",
        figure=report(
            f"{RESULTS}/figures/face_regions.png",
            caption="../report/face_regions.rst",
            category="4. Interpretability of the face CNN",
        ),
    log:
        f"{LOGS}/build_face_template.log",
    benchmark:
        f"{BENCHMARKS}/build_face_template.tsv"
    conda:
        "../envs/faces.yaml"
    params:
        region_dilation_px=config["faces"]["region_dilation_px"],
    script:
        "../workflow_scripts/build_face_template.py"
