"""Snakemake entry: semantic detectors among the face model's units (rule find_detectors).

Spatial-histogram scores and Network Dissection IoU of every unit of ``params.layers``
against the face template's regions: the detector table, counts per layer and region,
one histogram figure per layer and one montage per region (traitlens.interpret.detectors).
"""

from traitlens.core.errors import run_entry
from traitlens.interpret.detectors import find_detectors


def main() -> None:
    sm = snakemake  # noqa: F821 (injected by Snakemake)
    find_detectors(
        dumps=list(sm.input.dumps),
        template=sm.input.template,
        faces=list(sm.input.faces),
        layers=list(sm.params.layers),
        detectors=dict(sm.params.detectors),
        segmentation=dict(sm.params.segmentation),
        table_out=sm.output.table,
        counts_out=sm.output.counts,
        histogram_outs=list(sm.output.histograms),
        montage_outs=list(sm.output.montages),
    )


run_entry(main, snakemake.log[0])  # noqa: F821
