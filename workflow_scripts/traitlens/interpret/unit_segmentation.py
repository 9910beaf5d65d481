"""Unit segmentation (Zhou et al. ICLR'15): where in its top images a unit fires.

For a unit and one of its top images, the cells of the unit's map whose activation
exceeds ``threshold`` x the map's max (0.5 in the paper) each stand for the unit's
receptive field centred on that cell; their union, drawn on the image, is the unit's
segmentation of it. Everything outside is darkened, so a montage of a unit's top images
shows what the unit responds to (docs/method.md §4).

Geometry: the model sees the stored image (a frame box or an aligned face crop) resized
to a square, so map cell (i, j) of an h x w map covers the image uniformly: its centre
is at x = (j + 0.5) W / w, y = (i + 0.5) H / h in image coordinates where pixel (r, c)
spans [c, c + 1) x [r, r + 1). The receptive field is a fraction of the input side; on
the image it spans ``receptive_field`` x W wide and ``receptive_field`` x H high (a
square of side ``receptive_field`` x H on a square image such as an aligned face; on a
non-square frame, squashed into the square input, the same field is a rectangle).

This module also holds the plot_unit_segmentation rule's work
(``plot_unit_segmentation``): one figure per model and layer, one row per unit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from traitlens.core.atomic import save_figure

log = logging.getLogger("traitlens.interpret.unit_segmentation")


def _cell_spans(n_cells: int, n_pixels: int, field: float, hot: np.ndarray) -> np.ndarray:
    """bool (len(hot), n_pixels): the pixels whose centre lies in [c - field/2, c + field/2)
    around each hot cell's centre c (half-open, so an integer field covers exactly
    ``field`` pixels when the centre falls on a pixel edge)."""
    centre = (hot + 0.5) * n_pixels / n_cells
    pixel = np.arange(n_pixels) + 0.5
    lo = centre[:, None] - field / 2
    return (pixel[None] >= lo) & (pixel[None] < lo + field)


def segmentation_mask(
    map_hw: np.ndarray, image_hw: tuple[int, int], threshold: float, receptive_field: float
) -> np.ndarray:
    """bool (H, W): the union of the receptive fields of the map cells whose activation
    exceeds ``threshold`` x max(map), clipped to the image; all False when max <= 0.

    ``receptive_field`` is the field's fraction of the input side (config per layer)."""
    m = np.asarray(map_hw, dtype=np.float64)
    height, width = (int(v) for v in image_hw)
    top = m.max() if m.size else 0.0
    if not top > 0:
        return np.zeros((height, width), dtype=bool)
    rows, cols = np.nonzero(m > threshold * top)
    h, w = m.shape
    in_rows = _cell_spans(h, height, receptive_field * height, rows)
    in_cols = _cell_spans(w, width, receptive_field * width, cols)
    # pixel (r, c) is covered when some hot cell covers both its row and its column
    return (in_rows.T.astype(np.float32) @ in_cols.astype(np.float32)) > 0


def masked_image(image: np.ndarray, mask: np.ndarray, dim: float = 0.2) -> np.ndarray:
    """uint8 image with the pixels outside ``mask`` scaled by ``dim`` (inside unchanged)."""
    image = np.asarray(image)
    if image.shape[:2] != np.shape(mask):
        raise ValueError(f"mask {np.shape(mask)} does not match image {image.shape[:2]}")
    scale = np.where(np.asarray(mask, dtype=bool), 1.0, dim)[..., None]
    return np.clip(np.round(image * scale), 0, 255).astype(np.uint8)


def pick_units(max_values: np.ndarray, n: int, top_k: int | None = None) -> np.ndarray:
    """The ``n`` units (columns) with the highest mean of their ``top_k`` largest values,
    best first; ties go to the lower unit number.

    Why: with no units listed, the montages show the units that respond most strongly
    to their best images, whose segmentations are the clearest; a unit that barely
    fires anywhere has nothing to show. ``max_values`` is a dump's ``max`` reduction
    (N, U) (each frame's max per unit) with ``top_k`` the K to average, or its
    ``top_value`` transposed (K, U) with ``top_k`` None (all rows: already the top K).
    """
    values = np.asarray(max_values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"need (frames, units) values, got shape {values.shape}")
    k = values.shape[0] if top_k is None else min(int(top_k), values.shape[0])
    if k < 1:
        raise ValueError("need at least one frame")
    top = -np.partition(-values, k - 1, axis=0)[:k] if k < values.shape[0] else values
    score = top.mean(axis=0)
    order = np.argsort(-score, kind="stable")  # stable: equal scores keep unit order
    return order[: max(0, int(n))]


def unit_montage(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    path: str | Path,
    title: str,
    empty_message: str = "no units to show",
) -> None:
    """A PNG with one row per unit: its label at the left, then its (already masked)
    images. No rows gives a figure that says ``empty_message``."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt

    n_cols = max((len(images) for _, images in rows), default=0)
    if not rows or n_cols == 0:
        fig = plt.figure(figsize=(8, 2.0), dpi=100)
        fig.suptitle(textwrap.fill(title, 95), fontsize=10, y=0.96, va="top")
        fig.text(0.5, 0.4, textwrap.fill(empty_message, 90), ha="center", va="center")
        save_figure(fig, path)
        return
    cell, label_w = 1.25, 1.6
    width = label_w + cell * n_cols
    wrapped = textwrap.fill(title, max(40, int(width * 12)))  # ~12 characters per inch at 10 pt
    title_h = 0.2 * (wrapped.count("\n") + 1) + 0.15
    height = title_h + cell * len(rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(width, height), dpi=100, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c], interpolation="nearest")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(wrapped, fontsize=10, y=1 - 0.05 / height, va="top")
    fig.subplots_adjust(
        left=(label_w - 0.1) / width, right=0.99, bottom=0.02, top=1 - title_h / height,
        wspace=0.04, hspace=0.06,
    )  # fmt: skip
    save_figure(fig, path)


def unit_rows(
    layer: str,
    units: Sequence[int],
    top_value: np.ndarray | None,
    top_maps: np.ndarray,
    images: np.ndarray,
    threshold: float,
    receptive_field: float,
    labels: Sequence[str] | None = None,
) -> list[tuple[str, list[np.ndarray]]]:
    """Montage rows for ``units``: each unit's top images (``images`` uint8 (len(units),
    n, H, W, 3), its first n top frames) masked by its segmentation (``top_maps`` (U, K,
    h, w)).
    ``labels`` (one per unit) replace the default "<layer> #<unit> top-K mean <value>"
    (``top_value`` (U, K) is only needed for the default)."""
    rows = []
    for i, unit in enumerate(units):
        shown = []
        for k, image in enumerate(images[i]):
            mask = segmentation_mask(top_maps[unit, k], image.shape[:2], threshold, receptive_field)
            shown.append(masked_image(image, mask))
        if labels is not None:
            label = labels[i]
        else:  # the value pick_units ranks by
            label = f"{layer} #{unit}\ntop-{top_value.shape[1]} mean {top_value[unit].mean():.3g}"
        rows.append((label, shown))
    return rows


def read_top_images(
    reader, keys, top_index: np.ndarray, units: Sequence[int], n_images: int, lookup: dict
) -> np.ndarray:
    """uint8 (len(units), n, H, W, 3): the first ``n_images`` top frames of each unit,
    read with ``reader`` (a pixel_reader.PixelReader) through the dump's keys."""
    n = min(int(n_images), top_index.shape[1])
    pos = top_index[np.asarray(units, dtype=np.int64)][:, :n].ravel()
    from traitlens.interpret.frame_refs import read_by_shard_row

    pixels = read_by_shard_row(
        reader, lookup, keys["shard_file"].to_numpy()[pos], keys["row"].to_numpy()[pos]
    )
    return pixels.reshape(len(units), n, *pixels.shape[1:])


def plot_unit_segmentation(
    dump: str | Path, data: Sequence[str | Path], segmentation: Mapping, figure: str | Path
) -> list[int]:
    """The plot_unit_segmentation rule: the dump's units (``segmentation["units"]``, a
    number n -> ``pick_units`` or a list of unit numbers), each a row of its top
    ``n_images`` images masked by its segmentation. Returns the units shown."""
    from traitlens.core.errors import UserError
    from traitlens.interpret import dump_file
    from traitlens.interpret.frame_refs import shard_lookup
    from traitlens.models.pixel_reader import PixelReader

    info = dump_file.dump_info(dump)
    layer, kind = str(info["layer"]), str(info["kind"])
    field = segmentation["receptive_field"]
    if isinstance(field, Mapping):
        if layer not in field:
            raise UserError(
                f"analysis.segmentation.receptive_field has no entry for layer {layer} "
                f"(it lists {sorted(field)}); add one (the field's fraction of the input side)"
            )
        field = field[layer]
    top_index, top_value, top_maps = dump_file.read_top(dump)
    n_units = top_index.shape[0]
    wanted = segmentation["units"]
    if isinstance(wanted, (int, np.integer)) and not isinstance(wanted, bool):
        units = [int(u) for u in pick_units(top_value.T, int(wanted))]
    else:
        units = [int(u) for u in wanted]
        bad = [u for u in units if not 0 <= u < n_units]
        if bad:
            raise UserError(
                f"analysis.segmentation.units lists unit(s) {bad} but {dump} has units "
                f"0..{n_units - 1}; list existing units or give a number of units"
            )
    keys = dump_file.read_keys(dump)
    names = keys["shard_file"].to_numpy()
    lookup = shard_lookup(names, list(data), f"{kind} shard", dump, "dump_activations")
    reader = PixelReader(kind, [str(p) for p in data])
    try:
        images = (
            read_top_images(reader, keys, top_index, units, segmentation["n_images"], lookup)
            if units
            else np.zeros((0, 0, 1, 1, 3), np.uint8)
        )
    finally:
        reader.close()
    rows = unit_rows(layer, units, top_value, top_maps, images, segmentation["threshold"], field)
    unit_montage(
        rows,
        figure,
        f"{info['model']} model, {layer}: top images per unit, segmented at "
        f"{segmentation['threshold']:g} x max (receptive field {field:g} of the input side)",
    )
    log.info("%s %s: %d unit(s) shown: %s", info["model"], layer, len(units), units)
    return units
