# Models (docs/method.md §1, 3, 5): DAN+ on frames (img) and on aligned faces (face), ridge
# regression on audio and on AUs, late fusion, and the accuracy tables.


rule train_visual:
    input:
        labels=f"{RESULTS}/manifest.tsv",
        data=visual_inputs,
        # the backbone's starting weights (VGG-Face): a new file retrains the model
        backbone=lambda wildcards: model_settings(wildcards.model)["weights"] or [],
    output:
        weights=f"{RESULTS}/models/{{model}}/weights.pt",
        history=f"{RESULTS}/models/{{model}}/training_log.tsv",
        figure=report(
            f"{RESULTS}/figures/loss_{{model}}.png",
            caption="../report/loss_curve.rst",
            category="1. Models",
            subcategory="training",
        ),
    log:
        f"{LOGS}/train_visual/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/train_visual/{{model}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
        mem_mb=4000,
    params:
        model=visual_settings,
        kind=lambda wildcards: model_kind(wildcards.model),
        amp=config["train"]["amp"],
    script:
        "../workflow_scripts/train_visual.py"


rule init_random_model:
    output:
        weights=f"{RESULTS}/models/{{model}}/random_init.pt",
    log:
        f"{LOGS}/init_random_model/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/init_random_model/{{model}}.tsv"
    conda:
        "../envs/train.yaml"
    params:
        model=visual_settings,
        kind=lambda wildcards: model_kind(wildcards.model),
        seed=ANALYSIS["controls"]["random_init_seed"],
    script:
        "../workflow_scripts/init_random_model.py"


rule predict_visual:
    input:
        weights=f"{RESULTS}/models/{{model}}/weights.pt",
        labels=f"{RESULTS}/manifest.tsv",
        data=visual_inputs,
    output:
        frames=f"{RESULTS}/models/{{model}}/frame_predictions.tsv",
        videos=f"{RESULTS}/models/{{model}}/predictions.tsv",
    log:
        f"{LOGS}/predict_visual/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/predict_visual/{{model}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
        mem_mb=4000,
    params:
        amp=config["train"]["amp"],
    script:
        "../workflow_scripts/predict_visual.py"


rule train_linear_model:
    input:
        labels=f"{RESULTS}/manifest.tsv",
        features=linear_model_features,
    output:
        model=f"{RESULTS}/models/{{linear}}/model.json",
        predictions=f"{RESULTS}/models/{{linear}}/predictions.tsv",
    log:
        f"{LOGS}/train_linear_model/{{linear}}.log",
    benchmark:
        f"{BENCHMARKS}/train_linear_model/{{linear}}.tsv"
    conda:
        "../envs/core.yaml"
    params:
        kind=lambda wildcards: wildcards.linear,
        alphas=lambda wildcards: config["models"][wildcards.linear]["alphas"],
        default_alpha=lambda wildcards: config["models"][wildcards.linear][
            "default_alpha"
        ],
    script:
        "../workflow_scripts/train_linear_model.py"


rule fuse_predictions:
    input:
        labels=f"{RESULTS}/manifest.tsv",
        image=model_predictions("img"),
        audio=model_predictions("audio"),
    output:
        predictions=model_predictions("img+audio"),
    log:
        f"{LOGS}/fuse_predictions.log",
    benchmark:
        f"{BENCHMARKS}/fuse_predictions.tsv"
    conda:
        "../envs/core.yaml"
    params:
        image_weight=config["models"]["fusion"]["image_weight"],
    script:
        "../workflow_scripts/fuse_predictions.py"


rule evaluate_models:
    input:
        labels=f"{RESULTS}/manifest.tsv",
        predictions=[model_predictions(m) for m in EVALUATED_MODELS],
    output:
        table=report(
            f"{RESULTS}/tables/accuracy.tsv",
            caption="../report/accuracy_table.rst",
            category="1. Models",
            subcategory="accuracy",
        ),
        markdown=f"{RESULTS}/tables/accuracy.md",
        metrics=f"{RESULTS}/tables/metrics.tsv",
        comparisons=report(
            f"{RESULTS}/tables/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="1. Models",
            subcategory="accuracy",
        ),
        figure=report(
            f"{RESULTS}/figures/accuracy.png",
            caption="../report/accuracy_figure.rst",
            category="1. Models",
            subcategory="accuracy",
        ),
    log:
        f"{LOGS}/evaluate_models.log",
    benchmark:
        f"{BENCHMARKS}/evaluate_models.tsv"
    conda:
        "../envs/core.yaml"
    params:
        models=list(EVALUATED_MODELS),
        splits=config["evaluation"]["splits"],
        n_boot=config["evaluation"]["n_boot"],
        confidence=config["evaluation"]["confidence"],
        seed=config["evaluation"]["seed"],
    script:
        "../workflow_scripts/evaluate_models.py"


# Seconds at First Impressions' size (tables, a few images): on a cluster they run on the
# submitting host, as a job each would wait in the queue longer than it runs.
localrules:
    train_linear_model,
    fuse_predictions,
    evaluate_models,
