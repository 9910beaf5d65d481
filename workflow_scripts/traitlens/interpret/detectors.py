"""Semantic detectors among a face model's units: spatial histograms and Network Dissection.

Two scores of the same question, "does this unit detect the eyes (eyebrows, nose,
mouth)?", on the aligned faces, whose semantic regions are masks on the face template
(docs/method.md §4):

* Spatial histogram (the paper): for each unit, where its highest activations fall on
  the aligned face. Over the unit's ``n_top`` strongest frames, each map is thresholded
  at ``threshold`` x its max (cells below -> 0), upsampled bilinearly to the template's
  S x S, normalised to mass 1 and averaged. The face model's input is the aligned crop
  resized uniformly, so map cells map uniformly onto the crop. A region's score is the
  histogram mass inside its mask; a unit is a detector of the region with the best
  score when that score is >= ``min_score``.
* Network Dissection (Bau et al. CVPR'17), our cross-check: per unit a threshold T_u,
  the top ``quantile`` (0.5%) of its activations over all frames and map cells; every
  map upsampled to ``size`` x ``size`` and binarised at T_u; IoU with each region mask
  summed over the frames. A unit is a detector of its best region when IoU >= min_iou.

Here: the spatial histograms, the tables, and ``find_detectors`` (the find_detectors
rule's work). Network Dissection is :mod:`traitlens.interpret.netdissect`, the resampling
both use :mod:`traitlens.interpret.resample`, the figures
:mod:`traitlens.interpret.detector_figures`. The core functions are pure numpy and
vectorised (a layer of 512 units scores in well under a second from its top-K maps).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core import atomic
from traitlens.core.faults import kill_point
from traitlens.faces.face_template import load_template
from traitlens.interpret.detector_figures import plot_layer_histograms
from traitlens.interpret.netdissect import layer_iou
from traitlens.interpret.resample import area_matrix, bilinear_matrix

log = logging.getLogger("traitlens.interpret.detectors")

TABLE_COLUMNS = [
    "layer",
    "unit",
    "region",
    "score",
    "iou",
    "histogram_detector",
    "netdissect_detector",
]
COUNT_COLUMNS = ["layer", "region", "n_units", "n_histogram_detectors", "n_netdissect_detectors"]
CEILING_COLUMNS = ["layer", "map_height", "map_width", "region", "ceiling", "reachable"]


# --- spatial histograms (the paper) ---------------------------------------------------------


def region_histograms(top_maps: np.ndarray, n_top: int, size: int, threshold: float) -> np.ndarray:
    """float64 (U, size, size): each unit's spatial histogram over its ``n_top`` (<= K)
    strongest frames (``top_maps`` (U, K, h, w), frames in descending order).

    Each frame's map keeps the cells >= ``threshold`` x its max (others -> 0), is
    upsampled bilinearly to size x size and normalised to mass 1; the unit's histogram
    is the mean over its frames. Frames whose map is all <= 0 carry no position and are
    left out of the mean (a unit with none has an all-zero histogram).

    Upsampling and averaging are linear, so this normalises each map by the mass its
    upsampled version would have, averages at the map's resolution and upsamples once
    per unit (exactly the same result, without U x n_top full-size maps in memory).
    """
    maps = np.asarray(top_maps, dtype=np.float32)
    if maps.ndim != 4:
        raise ValueError(f"top maps must be (units, K, h, w), got {maps.shape}")
    if not 1 <= n_top <= maps.shape[1]:
        raise ValueError(f"n_top {n_top} must be within 1..K = {maps.shape[1]}")
    maps = maps[:, :n_top]
    peak = maps.max(axis=(2, 3), keepdims=True)
    kept = np.where((maps >= threshold * peak) & (peak > 0), maps, 0.0).astype(np.float64)
    ry, rx = bilinear_matrix(maps.shape[2], size), bilinear_matrix(maps.shape[3], size)
    # mass of the upsampled map = a^T m b (a, b: the column sums of the resampling matrices)
    mass = np.einsum("unhw,h,w->un", kept, ry.sum(axis=0), rx.sum(axis=0))
    valid = mass > 0
    n_valid = valid.sum(axis=1, keepdims=True)
    weight = np.where(valid, 1.0 / np.where(valid, mass, 1.0), 0.0) / np.maximum(n_valid, 1)
    mean_small = np.einsum("unhw,un->uhw", kept, weight)
    return ry @ mean_small @ rx.T


def region_scores(hist: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """float64 (U, R): each unit's histogram mass inside each region mask (R, S, S)."""
    hist = np.asarray(hist, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if hist.shape[1:] != masks.shape[1:]:
        raise ValueError(f"histograms {hist.shape[1:]} and masks {masks.shape[1:]} differ")
    return hist.reshape(len(hist), -1) @ masks.reshape(len(masks), -1).T.astype(np.float64)


def region_ceilings(masks: np.ndarray, map_hw: tuple[int, int], threshold: float) -> np.ndarray:
    """float64 (R,): the score a perfect detector of each region reaches at an h x w map.

    The perfect detector's map is the region's mask (R, S, S) area-averaged onto the
    h x w grid (each cell = the share of it the region covers); it goes through the same
    :func:`region_histograms` and :func:`region_scores` as a real unit's top maps. A
    coarse map smears a thin region (eyebrows, eyes) over its neighbours when upsampled,
    so its ceiling can fall below ``min_score``: then no unit can be called its detector.
    """
    masks = np.asarray(masks, dtype=bool)
    h, w = map_hw
    ay, ax = area_matrix(masks.shape[1], h), area_matrix(masks.shape[2], w)
    ideal = np.einsum("ah,rhw,bw->rab", ay, masks.astype(np.float64), ax)
    hist = region_histograms(ideal[:, None], 1, masks.shape[-1], threshold)
    return np.diag(region_scores(hist, masks)).copy()


def ceiling_table(
    layer: str,
    map_hw: tuple[int, int],
    masks: np.ndarray,
    region_names: Sequence[str],
    threshold: float,
    min_score: float,
) -> pd.DataFrame:
    """One row per region (CEILING_COLUMNS): :func:`region_ceilings` at the layer's map
    size and ``reachable`` = ceiling >= ``min_score``."""
    ceiling = region_ceilings(masks, map_hw, threshold)
    return pd.DataFrame(
        {
            "layer": layer,
            "map_height": int(map_hw[0]),
            "map_width": int(map_hw[1]),
            "region": list(region_names),
            "ceiling": ceiling,
            "reachable": ceiling >= min_score,
        },
        columns=CEILING_COLUMNS,
    )


def best_region_verdicts(values: np.ndarray, minimum: float) -> np.ndarray:
    """bool (U, R): True at each unit's best region (the first among ties) when its
    value is >= ``minimum``; NaN values never pass."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros(values.shape, dtype=bool)
    if values.size == 0:
        return out
    filled = np.where(np.isnan(values), -np.inf, values)
    best = np.argmax(filled, axis=1)
    rows = np.arange(len(values))
    out[rows, best] = filled[rows, best] >= minimum
    return out


def histogram_verdicts(scores: np.ndarray, min_score: float) -> np.ndarray:
    """bool (U, R): a unit is a detector of region r when its score for r is >=
    ``min_score`` (config, 0.5). At most one region per unit: only its best region
    (highest score, the first among ties) can pass, so a unit whose mass is spread over
    two regions counts once, for the one where more of it falls."""
    return best_region_verdicts(scores, min_score)


def netdissect_verdicts(iou: np.ndarray, min_iou: float) -> np.ndarray:
    """bool (U, R): a unit is a detector of its best region (highest IoU, as Network
    Dissection labels a unit with its best concept) when that IoU >= ``min_iou``
    (config, 0.04); NaN (no maps stored) never passes."""
    return best_region_verdicts(iou, min_iou)


# --- tables ------------------------------------------------------------------------------------


def detector_table(
    layer: str,
    scores: np.ndarray,
    iou: np.ndarray | None,
    region_names: Sequence[str],
    min_score: float,
    min_iou: float,
) -> pd.DataFrame:
    """One row per unit x region: layer, unit, region, score, iou (NaN when the dump has
    no maps), histogram_detector, netdissect_detector."""
    scores = np.asarray(scores, dtype=np.float64)
    n_units, n_regions = scores.shape
    if len(region_names) != n_regions:
        raise ValueError(f"{n_regions} score columns but {len(region_names)} region names")
    iou = np.full(scores.shape, np.nan) if iou is None else np.asarray(iou, dtype=np.float64)
    return pd.DataFrame(
        {
            "layer": layer,
            "unit": np.repeat(np.arange(n_units), n_regions),
            "region": np.tile(np.asarray(region_names, dtype=object), n_units),
            "score": scores.ravel(),
            "iou": iou.ravel(),
            "histogram_detector": histogram_verdicts(scores, min_score).ravel(),
            "netdissect_detector": netdissect_verdicts(iou, min_iou).ravel(),
        },
        columns=TABLE_COLUMNS,
    )


def detector_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer and region (in the table's order): n_units (units of the layer),
    n_histogram_detectors, n_netdissect_detectors."""
    rows = []
    for layer, part in table.groupby("layer", sort=False):
        n_units = part["unit"].nunique()
        for region, sub in part.groupby("region", sort=False):
            rows.append(
                {
                    "layer": layer,
                    "region": region,
                    "n_units": n_units,
                    "n_histogram_detectors": int(sub["histogram_detector"].sum()),
                    "n_netdissect_detectors": int(sub["netdissect_detector"].sum()),
                }
            )
    return pd.DataFrame(rows, columns=COUNT_COLUMNS)


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    atomic.write_tsv(frame, path, "%.6g")


# --- the find_detectors rule -------------------------------------------------------------------


def find_detectors(
    dumps: Sequence[str | Path],
    template: str | Path,
    faces: Sequence[str | Path],
    layers: Sequence[str],
    detectors: Mapping,
    segmentation: Mapping,
    table_out: str | Path,
    counts_out: str | Path,
    histogram_outs: Sequence[str | Path],
    montage_outs: Sequence[str | Path],
    progress: bool = True,
    ceilings_out: str | Path | None = None,
) -> pd.DataFrame:
    """The find_detectors rule: score every unit of every layer's dump against the
    template's regions, write the table, the counts, one histogram figure per layer and
    one montage per region (its ``montage_units`` strongest histogram detectors over all
    layers, each with its top ``n_images`` faces segmented), and (``ceilings_out``) each
    layer's ceilings (:func:`ceiling_table`). Returns the table."""
    from traitlens.core.errors import UserError
    from traitlens.interpret import dump_file
    from traitlens.models.pixel_reader import PixelReader

    _, mean_face, masks, region_names = load_template(template)
    if not len(dumps) == len(layers) == len(histogram_outs):
        raise ValueError("find_detectors: dumps, layers and histogram outputs must match")
    if len(montage_outs) != len(region_names):
        raise ValueError(f"find_detectors: one montage per region {region_names}")
    size = masks.shape[-1]
    n_top = int(detectors["n_top"])
    min_score, min_iou = float(detectors["min_score"]), float(detectors["min_iou"])
    field = segmentation["receptive_field"]
    tables, tops, ceilings = [], {}, []
    for layer, dump, fig_out in zip(layers, dumps, histogram_outs, strict=True):
        info = dump_file.dump_info(dump)
        if str(info["layer"]) != layer or str(info["kind"]) != "face":
            raise UserError(
                f"{dump}: holds layer {info['layer']} of a {info['kind']} model, expected "
                f"layer {layer} of the face model; rerun dump_activations"
            )
        if layer not in field:
            raise UserError(
                f"analysis.segmentation.receptive_field has no entry for layer {layer}; add "
                "one (the field's fraction of the input side)"
            )
        top_index, top_value, top_maps = dump_file.read_top(dump)
        layer_n_top = n_top
        if n_top > top_maps.shape[1] == int(info["n_frames"]):
            # a data set smaller than top_k: the dump already holds every frame
            log.warning(
                "%s: only %d frames; n_top %d lowered to it", dump, top_maps.shape[1], n_top
            )
            layer_n_top = top_maps.shape[1]
        elif n_top > top_maps.shape[1]:
            raise UserError(
                f"analysis.detectors.n_top ({n_top}) exceeds the top_k ({top_maps.shape[1]}) "
                f"that {dump} stores; lower n_top or raise activations.top_k"
            )
        threshold = float(segmentation["threshold"])
        hist = region_histograms(top_maps, layer_n_top, size, threshold)
        ceiling = ceiling_table(
            layer, top_maps.shape[2:], masks, region_names, threshold, min_score
        )
        ceilings.append(ceiling)
        unreachable = ceiling.loc[~ceiling["reachable"], "region"].tolist()
        if unreachable:
            log.warning(
                "%s: at %dx%d maps no unit can reach min_score %g on %s (a perfect detector "
                "scores %s)", layer, *top_maps.shape[2:], min_score, unreachable,
                ceiling.set_index("region")["ceiling"].round(2).to_dict(),
            )  # fmt: skip
        scores = region_scores(hist, masks)
        iou = None
        if bool(info.get("stores_maps", False)):
            _, iou = layer_iou(
                dump, masks, float(detectors["iou_quantile"]), int(detectors["iou_size"]), progress
            )
        else:
            log.warning(
                "%s: no maps stored (activations.store_maps is false), so Network "
                "Dissection cannot run: iou is NaN and netdissect_detector false for %s",
                dump,
                layer,
            )
        table = detector_table(layer, scores, iou, region_names, min_score, min_iou)
        tables.append(table)
        plot_layer_histograms(layer, hist, scores, mean_face, masks, region_names, fig_out)
        tops[layer] = (dump, top_index, top_maps)
        log.info(
            "%s: %d units, histogram detectors %s",
            layer,
            len(scores),
            dict(
                zip(
                    region_names, histogram_verdicts(scores, min_score).sum(0).tolist(), strict=True
                )
            ),
        )
    table = pd.concat(tables, ignore_index=True)
    write_tsv(table, table_out)
    write_tsv(detector_counts(table), counts_out)
    if ceilings_out is not None:
        write_tsv(pd.concat(ceilings, ignore_index=True), ceilings_out)
    kill_point("find_detectors")

    reader = PixelReader("face", [str(p) for p in faces])
    keys: dict[str, pd.DataFrame] = {}  # read once per layer, only when a montage needs it
    try:
        for region, out in zip(region_names, montage_outs, strict=True):
            _region_montage(
                table, region, tops, keys, reader, faces, detectors, segmentation, out, layers
            )
    finally:
        reader.close()
    return table


def _region_montage(
    table, region, tops, keys, reader, faces, detectors, segmentation, out, layers
) -> None:
    """Montage of a region's strongest histogram detectors (score descending, then layer
    order, then unit), each a row of its top faces masked by its segmentation."""
    from traitlens.interpret import dump_file
    from traitlens.interpret.frame_refs import shard_lookup
    from traitlens.interpret.unit_segmentation import read_top_images, unit_montage, unit_rows

    hits = table[(table["region"] == region) & table["histogram_detector"]].copy()
    hits["layer_no"] = hits["layer"].map({name: i for i, name in enumerate(layers)})
    hits = hits.sort_values(["score", "layer_no", "unit"], ascending=[False, True, True])
    chosen = hits.head(int(detectors["montage_units"]))
    threshold = float(segmentation["threshold"])
    field = segmentation["receptive_field"]
    by_index: dict[int, tuple[str, list[np.ndarray]]] = {}
    for layer, part in chosen.groupby("layer", sort=False):  # one image read per layer
        dump, top_index, top_maps = tops[layer]
        if layer not in keys:
            keys[layer] = dump_file.read_keys(dump)
        names = keys[layer]["shard_file"].to_numpy()
        lookup = shard_lookup(names, list(map(str, faces)), "faces", dump, "dump_activations")
        units = part["unit"].tolist()
        images = read_top_images(
            reader, keys[layer], top_index, units, segmentation["n_images"], lookup
        )
        labels = [
            f"{layer} #{u} {region} {s:.2f}" for u, s in zip(units, part["score"], strict=True)
        ]
        made = unit_rows(
            layer, units, None, top_maps, images, threshold, float(field[layer]), labels
        )
        by_index.update(zip(part.index, made, strict=True))
    rows = [by_index[i] for i in chosen.index]  # back to score order
    title = (
        f"{region} detectors: the {len(rows)} strongest of {len(hits)} over {', '.join(layers)} "
        f"(spatial histogram score >= {float(detectors['min_score']):g}); their top faces, "
        f"segmented where the map exceeds {threshold:g} x its max"
    )
    unit_montage(
        rows,
        out,
        title if rows else f"{region} detectors over {', '.join(layers)}",
        empty_message=(
            f"No {region} detector: no unit of {', '.join(layers)} has >= "
            f"{float(detectors['min_score']):g} of its spatial histogram on the {region}."
        ),
    )
