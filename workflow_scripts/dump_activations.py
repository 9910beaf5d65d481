"""Snakemake entry: per-unit activation dumps of a trained image/face model, one HDF5 file
per layer (traitlens.interpret.activation_dump; docs/method.md §4, 5)."""

from traitlens.core.errors import run_entry
from traitlens.interpret.activation_dump import dump_model_files
from traitlens.models.predictions import read_labels
from traitlens.models.visual_model import RunConfig


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    run = RunConfig.from_mapping({**sm.params.run, "threads": sm.threads})
    dump_model_files(
        sm.input.weights,
        read_labels(sm.input.labels),
        list(sm.input.data),
        list(sm.params.layers),
        list(sm.output.dumps),
        model_name=sm.wildcards.model,
        splits=list(sm.params.splits),
        top_k=int(sm.params.top_k),
        store_maps=bool(sm.params.store_maps),
        batch_size=int(sm.params.batch_size),
        run=run,
    )


run_entry(main, snakemake.log[0])  # noqa: F821
