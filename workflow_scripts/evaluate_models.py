"""Snakemake entry: labels + per-model predictions -> accuracy/metrics/comparison tables,
a Markdown summary and a bar figure (see traitlens.evaluation.accuracy_table)."""

from traitlens.core.errors import run_entry
from traitlens.evaluation.accuracy_table import evaluate, write_outputs
from traitlens.models.predictions import PRODUCED_BY, read_labels, read_predictions


def _as_list(value) -> list:
    # Snakemake hands a one-element named input over as a plain string.
    return [value] if isinstance(value, str) else list(value)


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    models = _as_list(sm.params.models)
    paths = _as_list(sm.input.get("predictions", []))
    if len(models) != len(paths) or len(set(models)) != len(models):
        raise ValueError(f"params.models {models} must name input.predictions {paths} one to one")
    result = evaluate(
        read_labels(sm.input.labels),
        {m: read_predictions(p, PRODUCED_BY[m]) for m, p in zip(models, paths, strict=True)},
        splits=_as_list(sm.params.splits),
        n_boot=int(sm.params.n_boot),
        confidence=float(sm.params.confidence),
        seed=int(sm.params.seed),
        sources=dict(zip(models, paths, strict=True)),
        labels_source=sm.input.labels,
    )
    write_outputs(
        result,
        table=sm.output.table,
        markdown=sm.output.markdown,
        metrics=sm.output.metrics,
        comparisons=sm.output.comparisons,
        figure=sm.output.figure,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
