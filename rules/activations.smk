# Per-unit activation dumps (docs/method.md §4, 5): one HDF5 file per model and layer with
# per-frame reductions, each unit's top-K frames and their maps, optionally all maps.


rule dump_activations:
    input:
        unpack(dumped_model_inputs),
    output:
        dumps=dumps("{dumped}"),
    log:
        f"{LOGS}/dump_activations/{{dumped}}.log",
    benchmark:
        f"{BENCHMARKS}/dump_activations/{{dumped}}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        **TRAIN_RESOURCES,
        mem_mb=4000,
    params:
        layers=DUMP_LAYERS,
        splits=ACTIVATIONS["splits"],
        top_k=ACTIVATIONS["top_k"],
        store_maps=ACTIVATIONS["store_maps"],
        amp=config["train"]["amp"],
    script:
        "../workflow_scripts/dump_activations.py"
