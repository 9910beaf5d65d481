"""Class activation maps (CAM) and Grad-CAM of the trained visual models (docs/method.md §2).

CAM (Zhou et al. CVPR'16) needs the CAM variant of the network (:class:`DanCam`): trait
t's map is CAM_t = sum_k w_{k,t} A_k over the extra conv layer's maps A_k, and its
spatial mean plus the bias is the trait's logit. DAN+ (:class:`DanPlus`) has no such
head, so for it we compute Grad-CAM (Selvaraju et al. ICCV'17) at conv5_3: the same
weighted sum with weights alpha_{k,t} = mean over space of d logit_t / d A_k, then ReLU.
Comparing the two tells whether the CAM variant looks where the paper's model looks.

``cam/<source>.h5`` (source img | face | img_gradcam) holds the raw maps at the
network's resolution with the keys of the frames they came from; the figures and the
face-overlap table upsample them to the image (:mod:`traitlens.interpret.cam_face_overlap`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from traitlens.core.atomic import atomic_path, save_figure, write_tsv
from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint
from traitlens.interpret.cam_face_overlap import frame_overlaps_and_areas, upsample_map
from traitlens.models.dan import TRAIT_ORDER, DanCam, DanPlus, _child_name
from traitlens.models.train import resolve_device
from traitlens.models.train_data import (
    PixelReader,
    SampleIndex,
    build_index,
    read_by_shard_row,
    sequential_plan,
    shard_lookup,
)
from traitlens.models.visual_model import RunConfig, load_trained, model_batches, on_device

log = logging.getLogger("traitlens.interpret.cam")

CAM_SCHEMA = """\
Class activation maps of one model on the frames of one split (traitlens compute_cam).
Per frame, row i (N = the usable frames of the split, in shard-file order):
  video_id     utf-8 string (N,) the frame's video
  frame_index  int32 (N,) 0-based index of the frame in its video
  shard_file   utf-8 string (N,) basename of the shard file the pixels came from
               (frames/<shard>.h5 for kind img, faces/<shard>.h5 for kind face)
  row          int64 (N,) row in that file's pixel dataset (frames | aligned)
  maps         float32 (N, 5, h, w) raw maps at the network's resolution, traits in
               attr traits order; method cam: CAM_t = sum_k w_{k,t} A_k over the maps A_k
               of the cam_conv layer (after its ReLU), whose spatial mean plus the head's
               bias is trait t's logit; method gradcam: ReLU(sum_k alpha_{k,t} A_k) over
               the post-ReLU maps A_k of attr layer, alpha_{k,t} = spatial mean of
               d logit_t / d A_k (logit = the output before the sigmoid). The model saw
               the whole image squashed to input_size x input_size, so map cell (y, x)
               covers the same fraction of the image's height and width.
  predictions  float32 (N, 5) the model's output (after the sigmoid)
Attributes: source, method (cam | gradcam), layer, kind (img | face), input_size, traits,
split, created_by, schema."""

DATASETS = ("video_id", "frame_index", "shard_file", "row", "maps", "predictions")


def _batches(model: DanPlus, kind: str, index: SampleIndex, batch_size: int, device, run):
    """(model input on device, positions) per batch, index order, no flips."""
    plan = sequential_plan(len(index), batch_size)
    batches = model_batches(kind, index, plan, model.cfg.input_size, device, run)
    for x, _, pos in tqdm(batches, total=len(plan), desc="maps", unit="batch"):
        yield x, pos.numpy()


def _empty_maps(n: int, model: DanPlus) -> np.ndarray:
    side = model.cfg.input_size // 16  # four 2x2 poolings before conv5_x
    return np.zeros((n, len(TRAIT_ORDER), side, side), dtype=np.float32)


def cam_for_index(
    model: DanCam,
    kind: str,
    index: SampleIndex,
    batch_size: int,
    device: torch.device,
    run: RunConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(maps float32 (N, 5, h, w), predictions float32 (N, 5)) in index order.

    Eval mode, no gradients, float32 throughout (no autocast): the maps are stored and
    their means must still add up to the logits."""
    if not isinstance(model, DanCam):
        raise TypeError("cam_for_index needs a DanCam (a model trained with head: cam)")
    model = on_device(model, device).eval()
    maps, pred = None, np.zeros((len(index), len(TRAIT_ORDER)), np.float32)
    with torch.no_grad():
        for x, pos in _batches(model, kind, index, batch_size, device, run):
            cams, p = model.class_activation_maps(x)
            if maps is None:
                maps = np.zeros((len(index), *cams.shape[1:]), np.float32)
            maps[pos], pred[pos] = cams.float().cpu().numpy(), p.float().cpu().numpy()
    return (maps if maps is not None else _empty_maps(0, model)), pred


def logits(model: DanPlus, x: torch.Tensor) -> torch.Tensor:
    """The outputs before the sigmoid, N x 5 (DanPlus or DanCam)."""
    if isinstance(model, DanCam):
        return model.head(model.cam_features(x).mean(dim=(2, 3)))
    return model.head(model.pooled(x))


def gradcam_batch(
    model: DanPlus, x: torch.Tensor, layer: str = "conv5_3"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grad-CAM of one batch: (maps N x 5 x h x w, alpha N x 5 x K, A N x K x h x w,
    predictions N x 5), all detached.

    A forward hook on the backbone child that outputs ``layer`` replaces its output by
    a detached copy that requires grad, so the gradient of each trait's logit (before
    the sigmoid: the sigmoid's slope would only rescale alpha per frame) stops at A; the
    layers before A run without recording a graph. The model's own forward
    (``pooled`` / ``cam_features``) is used unchanged: DAN+'s backbone.run goes on from
    relu5_3 to pool5, so conv5_3 reaches the head through pool5. Frames are independent
    in eval mode, so the gradient of the batch sum is every frame's own gradient.
    """
    child = _child_name(layer)
    modules = dict(model.backbone.named_children())
    if child not in modules:
        raise ValueError(f"no backbone layer {layer!r} (children: {list(modules)})")
    captured: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        leaf = output.detach().requires_grad_(True)
        captured.append(leaf)
        # from here on record the graph: the layers before A ran without one (no memory
        # kept for a backward pass that never goes there)
        torch.set_grad_enabled(True)
        return leaf

    handle = modules[child].register_forward_hook(keep)
    try:
        with torch.no_grad():  # restores the caller's grad mode on exit
            z = logits(model, x)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"layer {layer!r} ran {len(captured)} times in one forward pass")
    a = captured[0]
    grads = []
    for t in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, t].sum(), a, retain_graph=t < z.shape[1] - 1)
        grads.append(g.mean(dim=(2, 3)))
    alpha = torch.stack(grads, dim=1)  # N x T x K
    a = a.detach()
    maps = torch.relu(torch.einsum("ntk,nkhw->nthw", alpha, a))
    return maps, alpha, a, torch.sigmoid(z.detach())


def gradcam_for_index(
    model: DanPlus,
    kind: str,
    index: SampleIndex,
    batch_size: int,
    device: torch.device,
    run: RunConfig,
    layer: str = "conv5_3",
) -> tuple[np.ndarray, np.ndarray]:
    """(Grad-CAM maps float32 (N, 5, h, w), predictions float32 (N, 5)) in index order;
    see :func:`gradcam_batch` (gradients of the pre-sigmoid logits, float32, eval mode)."""
    model = on_device(model, device).eval()
    maps, pred = None, np.zeros((len(index), len(TRAIT_ORDER)), np.float32)
    for x, pos in _batches(model, kind, index, batch_size, device, run):
        m, _, _, p = gradcam_batch(model, x, layer)
        if maps is None:
            maps = np.zeros((len(index), *m.shape[1:]), np.float32)
        maps[pos], pred[pos] = m.float().cpu().numpy(), p.float().cpu().numpy()
    return (maps if maps is not None else _empty_maps(0, model)), pred


def write_cam_file(
    path: str | Path,
    source: str,
    method: str,
    layer: str,
    kind: str,
    input_size: int,
    split: str,
    index: SampleIndex,
    maps: np.ndarray,
    predictions: np.ndarray,
) -> None:
    """Write ``cam/<source>.h5`` (CAM_SCHEMA) atomically."""
    n = len(index)
    if maps.shape[:2] != (n, len(TRAIT_ORDER)) or predictions.shape != (n, len(TRAIT_ORDER)):
        raise ValueError(f"maps {maps.shape} / predictions {predictions.shape} for {n} frames")
    strings = h5py.string_dtype()
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.attrs.update(
            source=source,
            method=method,
            layer=layer,
            kind=kind,
            input_size=int(input_size),
            traits=list(TRAIT_ORDER),
            split=split,
            created_by=f"traitlens.interpret.cam with torch {torch.__version__}",
            schema=CAM_SCHEMA,
        )
        shard_files = np.array([Path(index.paths[i]).name for i in index.file], dtype=object)
        values = {
            "video_id": (np.array(index.video_id, dtype=object), strings),
            "frame_index": (index.frame_index.astype(np.int32), None),
            "shard_file": (shard_files, strings),
            "row": (index.row.astype(np.int64), None),
            "maps": (maps.astype(np.float32), None),
            "predictions": (predictions.astype(np.float32), None),
        }
        for name, (data, dtype) in values.items():
            f.create_dataset(name, data=data, dtype=dtype, track_times=False)


def read_cam_file(path: str | Path) -> dict:
    """A CAM file as one dict: its attributes (source, method, layer, kind, input_size,
    traits, split, created_by, schema) and its datasets as arrays (video_id and
    shard_file as object arrays of str)."""
    with open_checked(path, "CAM", "compute_cam", DATASETS) as f:
        out: dict = {
            k: (as_str(v) if isinstance(v, bytes | str) else v) for k, v in f.attrs.items()
        }
        for name in ("video_id", "shard_file"):
            out[name] = np.array([as_str(v) for v in f[name][:]], dtype=object)
        for name in ("frame_index", "row", "maps", "predictions"):
            out[name] = f[name][:]
    n = len(out["video_id"])
    traits = len(TRAIT_ORDER)
    shapes_ok = (
        out["maps"].ndim == 4
        and out["maps"].shape[:2] == (n, traits)
        and out["predictions"].shape == (n, traits)
        and all(len(out[k]) == n for k in ("frame_index", "row", "shard_file"))
    )
    missing = [k for k in ("kind", "method", "source", "split", "layer") if k not in out]
    if not shapes_ok or missing:
        problem = f"missing attributes {missing}" if missing else "datasets of unequal length"
        raise UserError(
            f"{path}: not a valid CAM file ({problem}); {rebuild_hint(path, 'compute_cam')}"
        )
    out["traits"] = [as_str(t) for t in out.get("traits", TRAIT_ORDER)]
    out["input_size"] = int(out.get("input_size", 0))
    return out


def _display(up: np.ndarray) -> np.ndarray:
    """A map scaled to 0..1 by its own min and max, as Zhou et al. show CAMs."""
    low, high = float(up.min()), float(up.max())
    return (up - low) / (high - low) if high > low else np.zeros_like(up)


def cam_grid_figure(
    images: np.ndarray,
    maps: np.ndarray,
    scores: np.ndarray,
    title: str,
    path: str | Path,
    alpha: float,
    columns: int = 5,
) -> None:
    """Grid of the images (uint8 K x H x W x 3) with their maps (K x h x w) upsampled to
    the image and overlaid as a jet heat map (each scaled by its own min and max), each
    tile titled with its predicted score; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(images)
    cols = max(1, min(columns, k))
    rows = max(1, math.ceil(k / cols))
    height, width = (images.shape[1], images.shape[2]) if k else (1, 1)
    tile = 2.2
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * tile * max(1.0, width / height), rows * tile + 0.6),
        squeeze=False,
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        ax.imshow(images[i])
        heat = _display(upsample_map(maps[i], height, width))
        ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        ax.set_title(f"{scores[i]:.3f}", fontsize=9)
    if k == 0:
        axes.flat[0].text(0.5, 0.5, "no frames", ha="center", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def overlap_histogram(table: pd.DataFrame, min_overlap: float, path: str | Path) -> None:
    """Histogram of the face overlap (scored rows, all traits) per source, a line at
    ``min_overlap`` and the share at or above it in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    bins = np.linspace(0.0, 1.0, 21)
    for source, rows in table.groupby("source", sort=True):
        values = rows["overlap"].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        share = float(np.mean(values >= min_overlap)) if len(values) else float("nan")
        ax.hist(
            values,
            bins=bins,
            histtype="step",
            linewidth=1.8,
            label=f"{source}: {share:.1%} >= {min_overlap:g} (n={len(values)})",
        )
    ax.axvline(min_overlap, color="k", linestyle="--", linewidth=1)
    ax.set(
        xlabel="|face box AND binarised map| / |binarised map|",
        ylabel="frame-trait pairs",
        title="Share of the highlighted region on the detected face",
        xlim=(0, 1),
    )
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


# --- what the entry scripts run -------------------------------------------------------

METHODS = ("cam", "gradcam")
OVERLAP_COLUMNS = (
    "source",
    "video_id",
    "frame_index",
    "trait",
    "face_found",
    "overlap",
    "cam_area",
)


def compute_cam_file(
    source: str,
    method: str,
    weights: str | Path,
    labels: pd.DataFrame,
    data: Sequence[str],
    split: str,
    batch_size: int,
    run: RunConfig,
    out: str | Path,
    layer: str = "conv5_3",
) -> int:
    """Maps of the ``split`` frames of ``data`` by the model in ``weights`` (method cam:
    its CAM, which needs a CAM-variant model; gradcam: Grad-CAM at ``layer``) written to
    ``out``; returns the number of frames."""
    if method not in METHODS:
        raise UserError(f"compute_cam for {source}: method {method!r}; expected one of {METHODS}")
    model, kind = load_trained(weights)
    if method == "cam" and not isinstance(model, DanCam):
        raise UserError(
            f"{weights}: not a CAM-variant model (it was trained with head: "
            f"{model.cfg.head}; CAM needs head: cam). The train_visual rule builds the CAM "
            "variants as models/img_cam and models/face_cam (config models.img_cam, "
            "models.face_cam); for a DAN+ model use Grad-CAM (method gradcam)"
        )
    index = build_index(kind, data, labels)
    index = index.subset(index.split == split)
    if len(index) == 0:
        raise UserError(
            f"no {kind} samples of the '{split}' split in {len(data)} shard file(s) for "
            f"{out}; check config analysis.cam.split and the QC tables (every frame of "
            "that split may have failed)"
        )
    device = resolve_device(run.device)
    torch.set_num_threads(max(1, run.threads))
    log.info(
        "%s of %s: %d %s frames (%s split) on %s", method, weights, len(index), kind, split, device
    )
    if method == "cam":
        maps, pred = cam_for_index(model, kind, index, batch_size, device, run)
        layer = "cam_conv"
    else:
        maps, pred = gradcam_for_index(model, kind, index, batch_size, device, run, layer)
    write_cam_file(out, source, method, layer, kind, model.cfg.input_size, split, index, maps, pred)
    return len(index)


def plot_cam_figures(
    cam_path: str | Path,
    data: Sequence[str | Path],
    out_paths: Sequence[str | Path],
    n_frames: int,
    alpha: float,
) -> None:
    """One grid per trait (``out_paths`` in TRAIT_ORDER): the ``n_frames`` frames with
    the highest prediction of the trait (ties: earlier frame first), map overlaid."""
    cam = read_cam_file(cam_path)
    if len(out_paths) != len(TRAIT_ORDER):
        raise ValueError(f"{len(out_paths)} figure paths for {len(TRAIT_ORDER)} traits")
    kind = cam["kind"]
    lookup = shard_lookup(cam["shard_file"], data, f"{kind} shard", cam_path, "compute_cam")
    reader = PixelReader(kind, [str(p) for p in data])
    try:
        for t, (trait, out) in enumerate(zip(TRAIT_ORDER, out_paths, strict=True)):
            top = np.argsort(-cam["predictions"][:, t], kind="stable")[:n_frames]
            images = (
                read_by_shard_row(reader, lookup, cam["shard_file"][top], cam["row"][top])
                if len(top)
                else np.zeros((0, 1, 1, 3), np.uint8)
            )
            title = (
                f"{cam['source']}: top {len(top)} {cam['split']} frames by predicted {trait} "
                f"({cam['method']}, {cam['layer']})"
            )
            cam_grid_figure(
                images, cam["maps"][top, t], cam["predictions"][top, t], title, out, alpha
            )
    finally:
        reader.close()


def face_overlap_table(
    cam_paths: Sequence[str | Path],
    faces: Sequence[str | Path],
    frames: Sequence[str | Path],
    threshold: float,
) -> pd.DataFrame:
    """One row per (CAM file, frame, trait): columns OVERLAP_COLUMNS. Each map is
    upsampled to its stored frame (H x W from the frames file's ``frames`` dataset),
    binarised at ``threshold`` of its maximum and compared with the face ``box`` of the
    faces file of the same basename and row. face_found: the detector kept a face (a
    finite box, even where the landmark fit failed); overlap NaN when not, or when the
    binarised map is empty; cam_area: fraction of the frame the binarised map covers."""
    parts = []
    for cam_path in cam_paths:
        cam = read_cam_file(cam_path)
        if cam["kind"] != "img":
            raise UserError(
                f"{cam_path}: maps of {cam['kind']} inputs; the face overlap needs maps of "
                "whole frames (kind img: sources img and img_gradcam)"
            )
        shards = sorted(set(cam["shard_file"]))
        face_no = shard_lookup(shards, faces, "faces", cam_path, "compute_cam")
        frame_no = shard_lookup(shards, frames, "frames", cam_path, "compute_cam")
        n = len(cam["row"])
        overlap = np.full((n, len(TRAIT_ORDER)), np.nan)
        area = np.zeros((n, len(TRAIT_ORDER)))
        found = np.zeros(n, dtype=bool)
        for shard in shards:
            at = np.flatnonzero(cam["shard_file"] == shard)
            with open_checked(frames[frame_no[shard]], "frames", "extract_shard", ["frames"]) as f:
                height, width = (int(v) for v in f["frames"].shape[1:3])
            with open_checked(faces[face_no[shard]], "faces", "detect_faces", ["box"]) as f:
                box = f["box"][:]
            rows = cam["row"][at]
            if len(rows) and rows.max() >= len(box):
                raise UserError(
                    f"{faces[face_no[shard]]}: {len(box)} face rows, but {cam_path} refers to "
                    f"row {rows.max()}; {rebuild_hint(cam_path, 'compute_cam')}"
                )
            boxes = box[rows].astype(np.float64)
            found[at] = np.isfinite(boxes).all(axis=1)
            overlap[at], area[at] = frame_overlaps_and_areas(
                cam["maps"][at], boxes, height, width, threshold
            )
        n_traits = len(TRAIT_ORDER)
        parts.append(
            pd.DataFrame(
                {
                    "source": cam["source"],
                    "video_id": np.repeat(cam["video_id"], n_traits),
                    "frame_index": np.repeat(cam["frame_index"], n_traits),
                    "trait": np.tile(np.array(TRAIT_ORDER, dtype=object), n),
                    "face_found": np.repeat(found, n_traits),
                    "overlap": overlap.reshape(-1),
                    "cam_area": area.reshape(-1),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=list(OVERLAP_COLUMNS))
    return pd.concat(parts, ignore_index=True).loc[:, list(OVERLAP_COLUMNS)]


def write_overlap_tables(
    table: pd.DataFrame, summary: pd.DataFrame, table_path: str | Path, summary_path: str | Path
) -> None:
    """Both TSVs atomically: 6 decimals, empty cells for NaN, booleans as true/false."""
    out = table.astype({"face_found": bool})
    write_tsv(out, table_path, "%.6f")
    write_tsv(summary, summary_path, "%.6f")
