"""How much of a class activation map lies on the detected face (docs/method.md §2).

M_CAM is the map upsampled to the stored frame (bilinear; the model saw the whole frame
squashed to a square, so stretching the map back to H x W puts each cell over the pixels
it saw) and binarised at ``fraction`` of its maximum (Zhou et al. CVPR'16 used 20%).
M_face is the detected face box. overlap = |M_face AND M_CAM| / |M_CAM|: the share of
the highlighted region that lies on the face.

Box coordinates follow the faces files: (0, 0) is the centre of the top-left pixel, so
pixel (row r, column c) is inside box (x0, y0, x1, y1) when x0 <= c <= x1 and
y0 <= r <= y1 (edges inclusive).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

# frames upsampled at once in frame_overlaps: 64 x 5 x 216 x 384 float32 is ~100 MB
CHUNK_FRAMES = 64


def _upsample(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, T, h, w) -> (N, T, height, width), bilinear, align_corners False."""
    return F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)


def upsample_map(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """One (h, w) map stretched to (height, width) float32, bilinear, align_corners False."""
    x = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    return _upsample(x, height, width)[0, 0].numpy()


def binarise(up: np.ndarray, fraction: float) -> np.ndarray:
    """Pixels at or above ``fraction`` of the map's maximum; all False when max <= 0
    (a map with nothing positive highlights nothing)."""
    peak = float(np.max(up)) if up.size else 0.0
    if peak <= 0:
        return np.zeros(up.shape, dtype=bool)
    return up >= fraction * peak


def box_overlap(mask: np.ndarray, box) -> float:
    """|mask AND box| / |mask|; NaN when the mask is empty or the box is NaN."""
    box = np.asarray(box, dtype=np.float64)
    area = int(mask.sum())
    if area == 0 or not np.isfinite(box).all():
        return float("nan")
    x0, y0, x1, y1 = box
    rows = np.arange(mask.shape[0])
    cols = np.arange(mask.shape[1])
    inside = ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]
    return float((mask & inside).sum()) / area


def frame_overlaps_and_areas(
    maps: np.ndarray,
    boxes: np.ndarray,
    height: int,
    width: int,
    fraction: float,
    chunk: int = CHUNK_FRAMES,
) -> tuple[np.ndarray, np.ndarray]:
    """(overlap (N, T), cam_area (N, T)): :func:`box_overlap` of every frame's binarised,
    upsampled maps with its box, and the fraction of the frame the binarised map covers.

    Same numbers as upsample_map -> binarise -> box_overlap per map, computed ``chunk``
    frames at a time with the box as row and column comparisons (no per-map loop).
    """
    maps = np.asarray(maps, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n, t = maps.shape[:2]
    if len(boxes) != n:
        raise ValueError(f"{n} frames of maps but {len(boxes)} boxes")
    overlap = np.full((n, t), np.nan)
    area = np.zeros((n, t))
    rows = torch.arange(height, dtype=torch.float64)
    cols = torch.arange(width, dtype=torch.float64)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        up = _upsample(torch.from_numpy(maps[start:stop]), height, width)
        peak = up.amax(dim=(2, 3), keepdim=True)
        # an infinite threshold leaves a map with nothing positive empty
        level = torch.where(peak > 0, fraction * peak, torch.full_like(peak, float("inf")))
        # 0/1 as float: the counts below are then matrix products (exact: < 2**24)
        mask = (up >= level).float()
        box = torch.from_numpy(boxes[start:stop])
        # NaN boxes compare False everywhere: no pixel inside; their overlap is set NaN below
        in_rows = ((rows[None, :] >= box[:, 1:2]) & (rows[None, :] <= box[:, 3:4])).float()
        in_cols = ((cols[None, :] >= box[:, 0:1]) & (cols[None, :] <= box[:, 2:3])).float()
        mask_area = mask.sum(dim=(2, 3)).double()
        inter = torch.einsum("bh,bthw,bw->bt", in_rows, mask, in_cols).double()
        with np.errstate(invalid="ignore", divide="ignore"):
            part = (inter / mask_area).numpy()
        valid = (mask_area.numpy() > 0) & np.isfinite(boxes[start:stop]).all(axis=1)[:, None]
        overlap[start:stop] = np.where(valid, part, np.nan)
        area[start:stop] = mask_area.numpy() / (height * width)
    return overlap, area


def frame_overlaps(
    maps: np.ndarray, boxes: np.ndarray, height: int, width: int, fraction: float
) -> np.ndarray:
    """(N, T) overlaps of maps (N, T, h, w) upsampled to (height, width), binarised at
    ``fraction`` of each map's maximum, with each frame's box (N, 4); NaN as box_overlap."""
    return frame_overlaps_and_areas(maps, boxes, height, width, fraction)[0]


def overlap_summary(table: pd.DataFrame, min_overlap: float) -> pd.DataFrame:
    """Per source and trait, and per source over all traits (trait 'all'):
    n_frames (rows: frame-trait pairs for 'all'), n_scored (rows with a finite overlap:
    a face was found and the binarised map is not empty), share_at_least (share of the
    scored rows with overlap >= min_overlap; NaN when none is scored), median_overlap.
    Columns: source, trait, min_overlap, n_frames, n_scored, share_at_least,
    median_overlap."""
    out = []
    for source, by_source in table.groupby("source", sort=True):
        traits = list(dict.fromkeys(by_source["trait"]))  # first-seen order (TRAIT_ORDER)
        for trait in [*traits, "all"]:
            rows = by_source if trait == "all" else by_source[by_source["trait"] == trait]
            values = rows["overlap"].to_numpy(dtype=float)
            scored = values[np.isfinite(values)]
            out.append(
                {
                    "source": source,
                    "trait": trait,
                    "min_overlap": min_overlap,
                    "n_frames": len(values),
                    "n_scored": len(scored),
                    "share_at_least": float(np.mean(scored >= min_overlap))
                    if len(scored)
                    else float("nan"),
                    "median_overlap": float(np.median(scored)) if len(scored) else float("nan"),
                }
            )
    return pd.DataFrame(
        out,
        columns=[
            "source",
            "trait",
            "min_overlap",
            "n_frames",
            "n_scored",
            "share_at_least",
            "median_overlap",
        ],
    )
