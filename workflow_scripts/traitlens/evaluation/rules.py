"""Rules of the evaluation stage (rules/train.smk's evaluate_models; rules/analysis.smk's
plot_comparisons, the comparisons' figure for the report): one function per rule, named
after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``.
"""

from __future__ import annotations

from traitlens.core.errors import Job
from traitlens.evaluation.accuracy_table import evaluate, write_outputs
from traitlens.ingest.manifest import read_groups
from traitlens.models.predictions import PRODUCED_BY, read_labels, read_predictions


def _as_list(value) -> list:
    # Snakemake hands a one-element named input over as a plain string.
    return [value] if isinstance(value, str) else list(value)


def evaluate_models(job: Job) -> None:
    """Labels and every model's predictions -> accuracy, metrics and comparison tables, a
    Markdown summary and a bar figure (traitlens.evaluation.accuracy_table). The
    manifest's groups (persons) are what the bootstrap resamples."""
    models = _as_list(job.params.models)
    paths = _as_list(job.input.predictions)
    if len(models) != len(paths) or len(set(models)) != len(models):
        raise ValueError(f"params.models {models} must name input.predictions {paths} one to one")
    result = evaluate(
        read_labels(job.input.labels),
        {m: read_predictions(p, PRODUCED_BY[m]) for m, p in zip(models, paths, strict=True)},
        splits=_as_list(job.params.splits),
        n_boot=int(job.params.n_boot),
        confidence=float(job.params.confidence),
        seed=int(job.params.seed),
        sources=dict(zip(models, paths, strict=True)),
        labels_source=job.input.labels,
        groups=read_groups(job.input.labels),
    )
    write_outputs(
        result,
        table=job.output.table,
        markdown=job.output.markdown,
        metrics=job.output.metrics,
        comparisons=job.output.comparisons,
        figure=job.output.figure,
    )


def plot_comparisons(job: Job) -> None:
    """The paired model comparisons (tables/comparisons.tsv) as a forest plot for the report
    (traitlens.evaluation.comparison_figure)."""
    from traitlens.evaluation import comparison_figure

    comparisons = comparison_figure.read_comparisons(job.input.comparisons)
    comparison_figure.plot_comparisons(comparisons, job.output.figure, float(job.params.confidence))
