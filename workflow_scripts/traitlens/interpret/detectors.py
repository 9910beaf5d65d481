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

The core functions are pure numpy and vectorised (a layer of 512 units scores in well
under a second from its top-K maps); the maps of a whole data set are streamed in
chunks. At the bottom, ``find_detectors`` is the find_detectors rule's work; its figures
are drawn by :mod:`traitlens.interpret.detector_figures`.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core import atomic
from traitlens.core.faults import kill_point
from traitlens.faces.face_template import load_template
from traitlens.interpret.detector_figures import plot_layer_histograms

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


# --- resampling as matrices ---------------------------------------------------------------


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float64 (n_out, n_in): 1-D bilinear resampling with align_corners False (torch's
    ``F.interpolate(mode="bilinear")``): output o samples input coordinate
    (o + 0.5) n_in / n_out - 0.5, clamped to the first and last sample."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(out, (np.arange(n_out), hi), frac)
    return out


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float64 (n_out, n_in): area averaging; output o averages the input span
    [o n_in / n_out, (o + 1) n_in / n_out), partial pixels weighted by their overlap."""
    edges = np.arange(n_out + 1) * n_in / n_out
    left, right = edges[:-1, None], edges[1:, None]
    pixel = np.arange(n_in)[None]
    overlap = np.clip(np.minimum(right, pixel + 1) - np.maximum(left, pixel), 0.0, None)
    return overlap / (n_in / n_out)


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """bool (R, size, size): each mask area-averaged to ``size`` and kept where > 0.5."""
    masks = np.asarray(masks, dtype=bool)
    ry, rx = area_matrix(masks.shape[1], size), area_matrix(masks.shape[2], size)
    return np.einsum("ah,rhw,bw->rab", ry, masks.astype(np.float64), rx) > 0.5


def upsample_maps(maps: np.ndarray, size: int) -> np.ndarray:
    """float32 (..., size, size): bilinear upsampling (align_corners False) of the last
    two axes, as two matrix products."""
    maps = np.asarray(maps, dtype=np.float32)
    ry = bilinear_matrix(maps.shape[-2], size).astype(np.float32)
    rx = bilinear_matrix(maps.shape[-1], size).astype(np.float32)
    return ry @ maps @ rx.T


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


# --- Network Dissection (Bau et al. CVPR'17) ------------------------------------------------


def _bin_counts(maps: np.ndarray, unit_max: np.ndarray, bins: int) -> np.ndarray:
    """int64 (U, bins): per-unit histogram of ``maps`` (n, U, h, w) over [0, unit_max];
    values below 0 fall in the first bin, above the max (float16 rounding) in the last."""
    n, n_units = maps.shape[:2]
    scale = np.where(unit_max > 0, bins / np.where(unit_max > 0, unit_max, 1.0), 0.0)
    x = (
        np.asarray(maps, dtype=np.float32).reshape(n, n_units, -1)
        * scale.astype(np.float32)[None, :, None]
    )
    np.clip(x, 0, bins - 1, out=x)
    idx = x.astype(np.int64)
    idx += (np.arange(n_units, dtype=np.int64) * bins)[None, :, None]
    return np.bincount(idx.ravel(), minlength=n_units * bins).reshape(n_units, bins)


def _quantile_from_counts(counts: np.ndarray, unit_max: np.ndarray, level: float) -> np.ndarray:
    """The ``level`` quantile (numpy's linear definition: sorted position level (n - 1))
    per unit from its bin counts, the values spread evenly within a bin."""
    n_units, bins = counts.shape
    width = np.where(unit_max > 0, unit_max, 0.0) / bins
    total = counts.sum(axis=1)
    pos = level * (total - 1)
    cum = np.cumsum(counts, axis=1)
    b = np.minimum((cum <= pos[:, None]).sum(axis=1), bins - 1)  # bin holding position pos
    before = np.where(b > 0, cum[np.arange(n_units), b - 1], 0)
    inside = counts[np.arange(n_units), b]
    frac = np.clip((pos - before + 0.5) / np.maximum(inside, 1), 0.0, 1.0)
    return np.where(total > 0, (b + frac) * width, 0.0)


def unit_quantile_thresholds(
    iter_maps: Iterable[tuple[int, np.ndarray]],
    n_units: int,
    quantile: float,
    unit_max: np.ndarray | None = None,
    memory_bytes: int = 128 * 2**20,
    bins: int = 4096,
) -> np.ndarray:
    """float64 (U,): per unit the value T_u with P(a > T_u) = ``quantile`` (config,
    0.005) over all frames and map cells, i.e. the (1 - quantile) quantile, streamed
    from ``iter_maps`` chunks (start, maps (n, U, h, w)).

    Exact (``np.quantile``, linear interpolation) while all values fit in
    ``memory_bytes``. Beyond that, a per-unit histogram of ``bins`` equal bins between 0
    and the unit's max (``unit_max``: the max over frames of the dump's ``max``
    reduction, so no extra pass over the maps is needed), the quantile interpolated
    within its bin: the error is below one bin, unit_max / bins (4096 bins: < 0.025% of
    the max, well below the 1% asked for). Maps are post-ReLU, so 0 is the lower end.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be within (0, 1), got {quantile}")
    level = 1.0 - quantile
    stored: list[np.ndarray] = []
    stored_bytes = 0
    counts = None
    for _, maps in iter_maps:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.shape[1] != n_units:
            raise ValueError(f"maps have {maps.shape[1]} units, expected {n_units}")
        if counts is not None:
            counts += _bin_counts(maps, unit_max, bins)
            continue
        stored.append(maps)
        stored_bytes += maps.nbytes
        if stored_bytes > memory_bytes:
            if unit_max is None:
                raise ValueError("the maps exceed memory_bytes: pass unit_max for the histogram")
            unit_max = np.asarray(unit_max, dtype=np.float64)
            log.info(
                "quantile thresholds: maps exceed %.0f MiB, per-unit histograms of %d bins "
                "(error < max / %d)",
                memory_bytes / 2**20,
                bins,
                bins,
            )
            counts = sum(_bin_counts(r, unit_max, bins) for r in stored)
            stored = []
    if counts is not None:
        return _quantile_from_counts(counts, unit_max, level)
    if not stored:
        raise ValueError("no maps to compute thresholds from")
    values = np.concatenate(stored).transpose(1, 0, 2, 3).reshape(n_units, -1)
    return np.quantile(values, level, axis=1).astype(np.float64)


def netdissect_iou(
    iter_maps: Iterable[tuple[int, np.ndarray]],
    thresholds: np.ndarray,
    masks: np.ndarray,
    size: int,
    memory_bytes: int = 64 * 2**20,
) -> np.ndarray:
    """float64 (U, R): IoU_{u,r} = sum_frames |up(map) > T_u AND region| / sum_frames
    |up(map) > T_u OR region|, maps upsampled bilinearly to ``size`` (config iou_size,
    56) and masks area-averaged to ``size`` (kept where > 0.5), streamed over the
    ``iter_maps`` chunks (start, maps (n, U, h, w)); 0 where the union is empty.

    A bilinear sample is a convex combination of map cells, so a map whose max is <= T_u
    has no upsampled pixel above it: only the (frame, unit) maps whose max exceeds T_u
    are upsampled (with T_u the top 0.5% quantile, a small share of them). The others
    still count in the union through the region's area.
    """
    small = resize_masks(masks, size)
    region = small.reshape(len(small), -1).T.astype(np.float32)  # (P, R)
    area = small.reshape(len(small), -1).sum(axis=1).astype(np.float64)
    t = np.asarray(thresholds, dtype=np.float32)
    n_units, n_regions = len(t), len(small)
    inter = np.zeros((n_units, n_regions))
    active = np.zeros(n_units)
    n_frames = 0
    ry = rx = None
    step = max(1, memory_bytes // (size * size * 4))  # maps upsampled at once
    for _, maps in iter_maps:
        maps = np.asarray(maps, dtype=np.float32)
        if maps.shape[1] != n_units:
            raise ValueError(f"maps have {maps.shape[1]} units, expected {n_units}")
        if ry is None:
            ry = bilinear_matrix(maps.shape[2], size).astype(np.float32)
            rx = bilinear_matrix(maps.shape[3], size).astype(np.float32).T.copy()
        n_frames += len(maps)
        frame, unit = np.nonzero(maps.max(axis=(2, 3)) > t[None])
        for s in range(0, len(unit), step):
            u = unit[s : s + step]
            on = (ry @ maps[frame[s : s + step], u] @ rx) > t[u, None, None]
            on = on.reshape(len(u), -1)
            active += np.bincount(u, weights=on.sum(axis=1), minlength=n_units)
            hits = on.astype(np.float32) @ region  # (m, R)
            for r in range(n_regions):
                inter[:, r] += np.bincount(u, weights=hits[:, r], minlength=n_units)
    union = active[:, None] + n_frames * area[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


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


def _chunk_frames(n_units: int, h: int, w: int, budget: int = 64 * 2**20) -> int:
    return max(1, budget // max(1, n_units * h * w * 4))


def layer_iou(
    dump: str | Path, masks: np.ndarray, quantile: float, size: int, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds (U,), IoU (U, R)) of one dump with maps: two passes over its maps."""
    from tqdm import tqdm

    from traitlens.interpret import dump_file

    info = dump_file.dump_info(dump)
    n_frames, n_units = int(info["n_frames"]), int(info["n_units"])
    chunk = _chunk_frames(n_units, int(info["map_height"]), int(info["map_width"]))
    unit_max = dump_file.read_reduction(dump, "max").max(axis=0, initial=0.0)

    def chunks(what):
        return tqdm(
            dump_file.iter_maps(dump, chunk),
            total=math.ceil(n_frames / chunk),
            desc=f"{info['layer']} {what}",
            unit="chunk",
            file=sys.stderr,
            disable=not progress,
        )

    thresholds = unit_quantile_thresholds(chunks("quantiles"), n_units, quantile, unit_max)
    return thresholds, netdissect_iou(chunks("IoU"), thresholds, masks, size)


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
) -> pd.DataFrame:
    """The find_detectors rule: score every unit of every layer's dump against the
    template's regions, write the table, the counts, one histogram figure per layer and
    one montage per region (its ``montage_units`` strongest histogram detectors over all
    layers, each with its top ``n_images`` faces segmented). Returns the table."""
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
    tables, tops = [], {}
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
        hist = region_histograms(top_maps, layer_n_top, size, float(segmentation["threshold"]))
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
