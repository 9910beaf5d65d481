"""Rules of the interpretability stage (rules/activations.smk, rules/analysis.smk): one
function per rule, named after it.

Each takes the job (Snakemake's ``snakemake`` object; see traitlens.core.errors.Job) and
is called by its entry script ``workflow_scripts/<rule>.py`` through ``run_rule``. Each
rule imports its modules inside its function, so that a rule runs in its own env: the
dumps and CAM need PyTorch, the analyses of their files need not.
"""

from __future__ import annotations

import logging

from traitlens.core.errors import Job
from traitlens.models.predictions import read_labels
from traitlens.models.rules import run_config

log = logging.getLogger("traitlens.interpret")


def dump_activations(job: Job) -> None:
    """Per-unit activation dumps of a trained image or face model (or of its untrained
    control, wildcard ``dumped`` <model>_random_init), one HDF5 file per layer
    (traitlens.interpret.activation_dump; docs/method.md §4, 5), in batches of config
    ``activations.batch_size`` (they do not change the dumps)."""
    from traitlens.interpret.activation_dump import dump_model_files

    dump_model_files(
        job.input.weights,
        read_labels(job.input.labels),
        list(job.input.data),
        list(job.params.layers),
        list(job.output.dumps),
        model_name=job.wildcards.dumped,
        splits=list(job.params.splits),
        top_k=int(job.params.top_k),
        store_maps=bool(job.params.store_maps),
        batch_size=int(job.config["activations"]["batch_size"]),
        run=run_config(job),
    )


def compute_cam(job: Job) -> None:
    """Class activation maps of one model on the frames of one split: wildcard ``source``
    img | face (CAM of the CAM variants img_cam / face_cam) or img_gradcam (Grad-CAM of the
    DAN+ img model), ``params.method`` cam | gradcam; writes cam/<source>.h5, in batches of
    config ``train.predict_batch_size`` (they do not change the maps)."""
    from traitlens.interpret.cam import compute_cam_file

    compute_cam_file(
        source=job.wildcards.source,
        method=job.params.method,
        weights=job.input.weights,
        labels=read_labels(job.input.labels),
        data=list(job.input.data),
        split=job.params.split,
        batch_size=int(job.config["train"]["predict_batch_size"]),
        run=run_config(job),
        out=job.output.cam,
    )


def plot_cam(job: Job) -> None:
    """Per trait, the frames with the highest prediction with their class activation map
    overlaid (docs/method.md §2), from cam/<source>.h5."""
    from traitlens.interpret.cam_figures import plot_cam_figures

    plot_cam_figures(
        job.input.cam,
        list(job.input.data),
        list(job.output.figures),  # one per trait, in TRAIT_ORDER
        int(job.params.n_frames),
        float(job.params.alpha),
    )


def cam_face_overlap(job: Job) -> None:
    """How much of each binarised CAM / Grad-CAM lies on the detected face (docs/method.md
    §2): per-frame table, summary per source and trait, histogram."""
    from traitlens.interpret.cam_face_overlap import (
        face_overlap_table,
        overlap_summary,
        write_overlap_tables,
    )
    from traitlens.interpret.cam_figures import overlap_histogram

    table = face_overlap_table(
        list(job.input.cams),
        list(job.input.faces),
        list(job.input.frames),
        job.params.threshold,
        threads=job.threads,
        progress=True,
    )
    summary = overlap_summary(table, job.params.min_overlap)
    write_overlap_tables(table, summary, job.output.table, job.output.summary)
    overlap_histogram(table, job.params.min_overlap, job.output.figure)


def plot_unit_segmentation(job: Job) -> None:
    """Unit segmentation montage of one model's layer (Zhou et al. ICLR'15): each shown unit
    is a row of its top images, masked where its map exceeds the threshold."""
    from traitlens.interpret.unit_segmentation import (
        plot_unit_segmentation as plot_segmentation,
    )

    plot_segmentation(
        job.input.dump, list(job.input.data), dict(job.params.segmentation), job.output.figure
    )


def find_detectors(job: Job) -> None:
    """Semantic detectors among the face model's units: spatial-histogram scores and
    Network Dissection IoU against the face template's regions; the detector table,
    counts per layer and region, the ceilings (the score a perfect detector of each region
    reaches at each layer's map size), a histogram figure per layer and a montage per
    region."""
    from traitlens.interpret.detectors import find_detectors as find_region_detectors

    find_region_detectors(
        dumps=list(job.input.dumps),
        template=job.input.template,
        faces=list(job.input.faces),
        layers=list(job.params.layers),
        detectors=dict(job.params.detectors),
        segmentation=dict(job.params.segmentation),
        table_out=job.output.table,
        counts_out=job.output.counts,
        histogram_outs=list(job.output.histograms),
        montage_outs=list(job.output.montages),
        ceilings_out=getattr(job.output, "ceilings", None),  # a control's rule may omit it
    )


def find_au_detectors(job: Job) -> None:
    """AU-detector emergence over the face model's units (docs/method.md §5): the table
    (the paper's p, and the verdict: the cluster-aware p with whole videos moved within
    each person, BH-corrected, with decoy rows), its permutation null (over all frames,
    and within videos) and the figure."""
    import pandas as pd

    from traitlens.aus.estimate_aus import read_frame_table
    from traitlens.interpret.au_emergence import (
        au_unit_frames,
        cluster_null_rates,
        emergence_table,
        null_table,
        top_n_masks,
        video_groups,
        write_table,
    )
    from traitlens.interpret.au_emergence_figure import plot_emergence

    cfg = job.params.au_emergence
    aus = list(cfg["aus"])
    n_top, alpha = int(cfg["n_top"]), float(cfg["alpha"])
    n_permutations, seed = int(cfg["n_permutations"]), int(cfg["seed"])
    au_tables = pd.concat([read_frame_table(p) for p in job.input.aus], ignore_index=True)
    au_values, unit_max, labels, videos, frame_index = au_unit_frames(
        list(job.input.dumps), au_tables, aus
    )
    groups = video_groups(job.input.manifest, videos)
    log.info("%d frames x %d units (%d layers), %d AUs", *unit_max.shape,
             len({layer for layer, _ in labels}), len(aus))  # fmt: skip
    masks = top_n_masks(au_values, unit_max, n_top, seed)  # once for the table and both nulls
    table = emergence_table(
        au_values, unit_max, labels, aus, n_top, seed, masks, videos=videos, groups=groups,
        frame_order=frame_index, n_perm=int(cfg["cluster_permutations"]), alpha=alpha,
        progress=True,
    )  # fmt: skip
    null = null_table(au_values, unit_max, aus, n_top, alpha, n_permutations, seed, masks=masks)
    # the same null with frames shuffled only within their video: what survives it is
    # tied to the videos (their AU level, their person), not to frame-level co-activation
    within = null_table(
        au_values, unit_max, aus, n_top, alpha, n_permutations, seed, groups=videos, masks=masks
    )
    null["false_positive_rate_within_video"] = within["false_positive_rate"].to_numpy()
    # the verdict's own null: the cluster-aware test on tracks moved over whole videos
    n_null = int(cfg["cluster_null_draws"])
    rates, pooled = cluster_null_rates(
        au_values, unit_max, aus, n_top, alpha, n_null, n_permutations, seed,
        videos=videos, groups=groups, frame_order=frame_index, masks=masks, progress=True,
    )  # fmt: skip
    null["cluster_null_draws"] = n_null
    null["cluster_false_positive_rate"] = [*rates, pooled]
    write_table(table, job.output.table)
    write_table(null, job.output.null)
    plot_emergence(table, null, alpha, job.output.figure)
    rate = dict(zip(null["au"], null["false_positive_rate"], strict=True))
    for row in table.itertuples():
        log.info(
            "%s best %s#%d I_max=%d (expected %.1f) log10 p=%.2f p_perm=%.4g q_bh=%.4g "
            "significant=%s null rate=%.3f %s",
            row.au, row.layer, row.unit, row.i_max, row.expected_overlap, row.log10_p,
            row.p_perm, row.q_bh, row.significant, rate.get(row.au, float("nan")), row.note,
        )  # fmt: skip
    log.info("null false-positive rate over all AUs: %.4f (alpha %g)", rate["all"], alpha)


def plot_emergence_null(job: Job) -> None:
    """The AU-emergence nulls as a figure for the report: each test's false-positive rate
    per AU with its Wilson interval, against alpha (traitlens.interpret.emergence_null_figure)."""
    from traitlens.interpret import emergence_null_figure

    null = emergence_null_figure.read_null(job.input.null)
    emergence_null_figure.plot_emergence_null(
        null, float(job.params.alpha), job.output.figure, float(job.params.confidence)
    )
