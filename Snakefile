# traitlens: "Interpreting CNN Models for Apparent Personality Trait Regression"
# (Ventura, Masip, Lapedriza, CVPRW 2017) as a workflow. See README.md.
#
#   snakemake --cores 8                                  # the demo data set
#   snakemake --cores 8 --configfile config/first_impressions.yaml
#   snakemake --cores 8 --sdm conda                      # each rule in its envs/*.yaml
#
# A config builds on the defaults in schemas/config.schema.yaml (the paper's settings).
# config.yaml holds the demo's own small sizes and is read only when no --configfile is
# given, so a data set's config never inherits them (list it first to build on the demo:
# --configfile config.yaml mine.yaml).


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/extract.smk"
include: "rules/faces.smk"
include: "rules/aus.smk"
include: "rules/train.smk"
include: "rules/activations.smk"
include: "rules/analysis.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        f"{RESULTS}/manifest.tsv",
        f"{RESULTS}/qc/videos.tsv",
        f"{RESULTS}/faces/template.h5",
        f"{RESULTS}/figures/face_regions.png",
        per_shard(f"{RESULTS}/aus/{{shard}}.tsv"),
        f"{RESULTS}/tables/accuracy.tsv",
        expand(f"{RESULTS}/figures/loss_{{model}}.png", model=VISUAL_MODELS),
        planted_validation(),
        interpretability_outputs(),
        REPORT_OUTPUTS,
