"""How much of a class activation map lies on the detected face (docs/method.md §2).

M_CAM is the map upsampled to the stored frame (bilinear; the model saw the whole frame
squashed to a square, so stretching the map back to H x W puts each cell over the pixels
it saw) and binarised at ``fraction`` of its maximum (Zhou et al. CVPR'16 used 20%).
M_face is the detected face box. overlap = |M_face AND M_CAM| / |M_CAM|: the share of
the highlighted region that lies on the face. :func:`face_overlap_table` is the
cam_face_overlap rule's table, from the CAM files (:mod:`traitlens.interpret.cam_file`).

Next to it, Zhou et al.'s own localisation (CVPR'16 §3): the bounding box of the largest
connected component (8-connected, as the contours of their code) of the same binarised
map. ``region_share`` is the share of that box's pixels inside the face box,
``region_iou`` its IoU with the face box (the face box clipped to the frame). Stray
blobs away from the face lower the paper's pixel overlap but not the region's measures,
so the two together tell a diffuse map from one that points elsewhere.

Box coordinates follow the faces files: (0, 0) is the centre of the top-left pixel, so
pixel (row r, column c) is inside box (x0, y0, x1, y1) when x0 <= c <= x1 and
y0 <= r <= y1 (edges inclusive).

numpy only (no PyTorch): the upsampling reproduces torch's CPU ``F.interpolate(mode=
"bilinear", align_corners=False)``, which the rule used before, bit for bit on maps of at
least 2 x 2 cells (CAM maps are input_size / cam_map_stride >= 2 a side) at the configs' frame sizes
(216 x 384, 360 x 640; tests/test_torch_free.py), so the tables keep their bytes. For
small frames torch rounds in another order: values may differ by one float32 ulp.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph
from tqdm import tqdm

from traitlens.core.atomic import write_tsv
from traitlens.core.errors import UserError
from traitlens.core.h5checks import rebuild_hint
from traitlens.extract import frames_file
from traitlens.faces import faces_file
from traitlens.interpret.cam_file import RULE as CAM_RULE
from traitlens.interpret.cam_file import read_cam_file
from traitlens.interpret.frame_refs import shard_lookup

# frames upsampled at once in frame_cam_measures: the work is memory-bound, and at 2
# frames (5 x 360 x 640 float64 temporaries, ~9 MB each) it ran 2.2x faster than at 16
CHUNK_FRAMES = 2
# frames per task of face_overlap_table's thread pool: small enough to share a shard's
# ~160 test frames between threads, large enough that a task is ~1 s of work
TASK_FRAMES = 32
MEASURES = ("overlap", "cam_area", "region_share", "region_iou")
OVERLAP_COLUMNS = (
    "source",
    "video_id",
    "frame_index",
    "trait",
    "face_found",
    "overlap",
    "cam_area",
    "region_share",
    "region_iou",
)
SUMMARY_COLUMNS = (
    "source",
    "trait",
    "min_overlap",
    "n_frames",
    "n_scored",
    "share_at_least",
    "median_overlap",
    "region_share_at_least",
    "median_region_iou",
)


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 a * b + c as torch's compiled kernels fuse it: the float64 product of two
    float32 values is exact, so only the sum is rounded (no separate float32 product)."""
    # C order: numpy lays out a gather along the last axis (maps[..., x0]) with that axis
    # outermost, and the masks made from it would be copied at every reshape
    return (np.asarray(a, np.float64) * b + c).astype(np.float32, order="C")


def _linear_weights(n_in: int, n_out: int):
    """(index0, index1, lambda0, lambda1) per output position, float32 as in torch's
    compute_source_index_and_lambda (half-pixel centres, clamped at the edges)."""
    if n_in == n_out:  # torch copies
        idx = np.arange(n_out)
        return idx, idx, np.ones(n_out, np.float32), np.zeros(n_out, np.float32)
    scale = np.float32(n_in) / np.float32(n_out)
    centre = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    src = np.maximum(_fma(centre, scale, np.float32(-0.5)), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    return i0, i1, (np.float32(1) - l1).astype(np.float32), l1


def _upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, T, h, w) -> (N, T, height, width) float32, bilinear, align_corners False: along
    the width, then along the height, with torch's operation order. The width pass does
    not depend on the output row, so it runs on the h input rows, not on every output row
    (the same operations on the same values: the result is unchanged, 3x less work)."""
    maps = np.asarray(maps, dtype=np.float32)
    y0, y1, a0, a1 = _linear_weights(maps.shape[-2], height)
    x0, x1, b0, b1 = _linear_weights(maps.shape[-1], width)
    along_width = _fma(maps[..., x0], b0, maps[..., x1] * b1)  # (N, T, h, width)
    t0, t1 = along_width[..., y0, :], along_width[..., y1, :]
    return _fma(t0, a0[:, None], t1 * a1[:, None])


def upsample_map(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """One (h, w) map stretched to (height, width) float32, bilinear, align_corners False."""
    return _upsample(np.asarray(m, dtype=np.float32)[None, None], height, width)[0, 0]


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


def largest_region_box(mask: np.ndarray) -> np.ndarray:
    """float64 (4,) x0, y0, x1, y1 (pixel indices, edges inclusive, as the face boxes) of
    the bounding box of the mask's largest 8-connected component (the first in raster
    order among equals); NaN when the mask is empty."""
    return largest_region_boxes(np.asarray(mask, dtype=bool)[None])[0]


def largest_region_boxes(masks: np.ndarray) -> np.ndarray:
    """float64 (M, 4): :func:`largest_region_box` of each of the masks (M, H, W).

    The components are found from the masks' runs (the stretches of True along a row),
    not pixel by pixel: two runs of adjacent rows touch (8-connected) when their column
    spans, each widened by one, overlap, and the components of that graph of runs are
    the mask's. An upsampled CAM has a few runs per row, so this is ~10x cheaper than
    labelling the pixels (scipy.ndimage.label), with the same boxes."""
    masks = np.asarray(masks, dtype=bool)
    m, h, w = masks.shape
    out = np.full((m, 4), np.nan)
    rows = masks.reshape(m * h, w)
    first = rows.copy()  # a run's first pixel: True, with False (or the edge) to its left
    first[:, 1:] &= ~rows[:, :-1]
    last = rows.copy()  # its last: True, with False (or the edge) to its right
    last[:, :-1] &= ~rows[:, 1:]
    row, start = np.divmod(np.flatnonzero(first), w)  # raster order
    end = np.flatnonzero(last) % w  # inclusive; the same order
    n_runs = len(row)
    if not n_runs:
        return out
    # runs of the row above (same mask) that touch each run: a contiguous range of runs
    width2 = w + 2  # keys row * width2 + column: a widened span stays within its row
    start_key, end_key = row * width2 + start, row * width2 + end
    above = (row - 1) * width2
    lo = np.searchsorted(end_key, above + start - 1, side="left")
    hi = np.searchsorted(start_key, above + end + 1, side="right")
    count = np.where(row % h > 0, np.maximum(hi - lo, 0), 0)  # a mask's first row: none
    run = np.repeat(np.arange(n_runs), count)
    touching = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    touching += np.repeat(lo, count)
    graph = sparse.coo_matrix(
        (np.ones(len(run), dtype=np.int8), (run, touching)), shape=(n_runs, n_runs)
    )
    _, component = csgraph.connected_components(graph, directed=False)
    # per component: its mask, pixels, first run (raster order) and bounding box
    order = np.argsort(component, kind="stable")  # runs by component, raster order inside
    bounds = np.flatnonzero(np.diff(component[order], prepend=-1))
    first_run = order[bounds]
    pixels = np.add.reduceat((end - start + 1)[order], bounds)
    mask_of = row[first_run] // h
    y = row % h
    boxes = np.stack(
        [
            np.minimum.reduceat(start[order], bounds),
            np.minimum.reduceat(y[order], bounds),
            np.maximum.reduceat(end[order], bounds),
            np.maximum.reduceat(y[order], bounds),
        ],
        axis=1,
    )
    # each mask's largest component, the first in raster order among equals
    best = np.lexsort((first_run, -pixels, mask_of))
    best = best[np.flatnonzero(np.diff(mask_of[best], prepend=-1))]
    out[mask_of[best]] = boxes[best]
    return out


def _pixel_span(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., 4) int: columns c0..c1 and rows r0..r1 of the pixels inside boxes (..., 4)
    (pixel centres, edges inclusive, clipped to the frame). A NaN box, or one wholly
    outside the frame, gets an empty span (c1 < c0 or r1 < r0, never below -1, so that
    slices ``c0 : c1 + 1`` are empty)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    finite = np.isfinite(boxes).all(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        lo = np.maximum(np.ceil(boxes[..., :2]), 0)
        hi = np.minimum(np.floor(boxes[..., 2:]), [width - 1, height - 1])
    span = np.where(finite, np.concatenate([lo, hi], axis=-1), [0, 0, -1, -1])
    return np.maximum(span, -1).astype(np.int64)


def region_box_measures(
    region: np.ndarray, face: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(share, iou), each (...,): of region boxes (..., 4) (integer pixel boxes inside the
    frame) against face boxes (..., 4) (pixel centres, edges inclusive, clipped to the
    height x width frame), counted in pixels; NaN where either box is NaN."""
    region = np.asarray(region, dtype=np.float64)
    face = np.asarray(face, dtype=np.float64)
    fx0, fy0, fx1, fy1 = np.moveaxis(_pixel_span(face, height, width), -1, 0)
    with np.errstate(invalid="ignore"):
        face_area = np.clip(fx1 - fx0 + 1, 0, None) * np.clip(fy1 - fy0 + 1, 0, None)
        rx0, ry0, rx1, ry1 = (region[..., i] for i in range(4))
        area = (rx1 - rx0 + 1) * (ry1 - ry0 + 1)
        ix = np.clip(np.minimum(rx1, fx1) - np.maximum(rx0, fx0) + 1, 0, None)
        iy = np.clip(np.minimum(ry1, fy1) - np.maximum(ry0, fy0) + 1, 0, None)
        inter = ix * iy
        share = inter / area
        iou = inter / (area + face_area - inter)
    valid = np.isfinite(region).all(axis=-1) & np.isfinite(face).all(axis=-1)
    return np.where(valid, share, np.nan), np.where(valid, iou, np.nan)


def frame_cam_measures(
    maps: np.ndarray,
    boxes: np.ndarray,
    height: int,
    width: int,
    fraction: float,
    regions: bool = True,
    chunk: int = CHUNK_FRAMES,
) -> dict[str, np.ndarray]:
    """Every measure of the maps (N, T, h, w) upsampled to (height, width) and binarised
    at ``fraction`` of each map's maximum, against each frame's box (N, 4):

    - ``overlap`` (N, T): :func:`box_overlap` (the paper's measure);
    - ``cam_area`` (N, T): the fraction of the frame the binarised map covers;
    - with ``regions``: ``region_box`` (N, T, 4) (:func:`largest_region_box`, Zhou et
      al.'s box), ``region_share`` and ``region_iou`` (N, T) (:func:`region_box_measures`).

    Same numbers as upsample_map -> binarise -> box_overlap per map, computed ``chunk``
    frames at a time, the box's pixels counted as one slice per frame, the connected
    components of the chunk's maps found together (:func:`largest_region_boxes`).
    """
    maps = np.asarray(maps, dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n, t = maps.shape[:2]
    if len(boxes) != n:
        raise ValueError(f"{n} frames of maps but {len(boxes)} boxes")
    overlap = np.full((n, t), np.nan)
    area = np.zeros((n, t))
    region_box = np.full((n, t, 4), np.nan)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        up = _upsample(maps[start:stop], height, width)
        peak = up.max(axis=(2, 3), keepdims=True)
        # an infinite threshold leaves a map with nothing positive empty
        level = np.where(peak > 0, fraction * peak, np.float32(np.inf)).astype(np.float32)
        mask = up >= level
        box = boxes[start:stop]
        mask_area = np.count_nonzero(mask, axis=(2, 3)).astype(np.float64)
        inter = np.zeros(mask_area.shape)
        for i, (c0, r0, c1, r1) in enumerate(_pixel_span(box, height, width)):
            # the pixels inside the box: a rectangle of rows r0..r1 and columns c0..c1
            inter[i] = np.count_nonzero(mask[i, :, r0 : r1 + 1, c0 : c1 + 1], axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            part = inter / mask_area
        valid = (mask_area > 0) & np.isfinite(box).all(axis=1)[:, None]
        overlap[start:stop] = np.where(valid, part, np.nan)
        area[start:stop] = mask_area / (height * width)
        if regions:
            region_box[start:stop] = largest_region_boxes(mask.reshape(-1, height, width)).reshape(
                stop - start, t, 4
            )
    out = {"overlap": overlap, "cam_area": area}
    if regions:
        share, iou = region_box_measures(region_box, boxes[:, None, :], height, width)
        out.update(region_box=region_box, region_share=share, region_iou=iou)
    return out


def frame_overlaps_and_areas(
    maps: np.ndarray,
    boxes: np.ndarray,
    height: int,
    width: int,
    fraction: float,
    chunk: int = CHUNK_FRAMES,
) -> tuple[np.ndarray, np.ndarray]:
    """(overlap (N, T), cam_area (N, T)) of :func:`frame_cam_measures`, without the
    connected components."""
    got = frame_cam_measures(maps, boxes, height, width, fraction, regions=False, chunk=chunk)
    return got["overlap"], got["cam_area"]


def frame_overlaps(
    maps: np.ndarray, boxes: np.ndarray, height: int, width: int, fraction: float
) -> np.ndarray:
    """(N, T) overlaps of maps (N, T, h, w) upsampled to (height, width), binarised at
    ``fraction`` of each map's maximum, with each frame's box (N, 4); NaN as box_overlap."""
    return frame_overlaps_and_areas(maps, boxes, height, width, fraction)[0]


def _share_at_least(values: np.ndarray, minimum: float) -> tuple[int, float, float]:
    """(n finite, share of them >= minimum, their median); NaNs when none is finite."""
    scored = values[np.isfinite(values)]
    if not len(scored):
        return 0, float("nan"), float("nan")
    return len(scored), float(np.mean(scored >= minimum)), float(np.median(scored))


def overlap_summary(table: pd.DataFrame, min_overlap: float) -> pd.DataFrame:
    """Per source and trait, and per source over all traits (trait 'all'):
    n_frames (rows: frame-trait pairs for 'all'), n_scored (rows with a finite overlap:
    a face was found and the binarised map is not empty), share_at_least (share of the
    scored rows with overlap >= min_overlap; NaN when none is scored), median_overlap,
    and for Zhou et al.'s box: region_share_at_least (share of the scored rows whose box
    lies >= min_overlap inside the face box) and median_region_iou (NaN when the table
    has no region columns). Columns: SUMMARY_COLUMNS."""
    out = []
    for source, by_source in table.groupby("source", sort=True):
        traits = list(dict.fromkeys(by_source["trait"]))  # first-seen order (TRAIT_ORDER)
        for trait in [*traits, "all"]:
            rows = by_source if trait == "all" else by_source[by_source["trait"] == trait]
            values = rows["overlap"].to_numpy(dtype=float)
            n_scored, share, median = _share_at_least(values, min_overlap)
            nan = np.full(len(rows), np.nan)
            region = rows["region_share"].to_numpy(dtype=float) if "region_share" in rows else nan
            iou = rows["region_iou"].to_numpy(dtype=float) if "region_iou" in rows else nan
            out.append(
                {
                    "source": source,
                    "trait": trait,
                    "min_overlap": min_overlap,
                    "n_frames": len(values),
                    "n_scored": n_scored,
                    "share_at_least": share,
                    "median_overlap": median,
                    "region_share_at_least": _share_at_least(region, min_overlap)[1],
                    "median_region_iou": _share_at_least(iou, 0.0)[2],
                }
            )
    return pd.DataFrame(out, columns=list(SUMMARY_COLUMNS))


def face_overlap_table(
    cam_paths: Sequence[str | Path],
    faces: Sequence[str | Path],
    frames: Sequence[str | Path],
    threshold: float,
    threads: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (CAM file, frame, trait): columns OVERLAP_COLUMNS. Each map is
    upsampled to its stored frame (H x W from the frames file's ``frames`` dataset),
    binarised at ``threshold`` of its maximum and compared with the face ``box`` of the
    faces file of the same basename and row. face_found: the detector kept a face (a
    finite box, even where the landmark fit failed); overlap NaN when not, or when the
    binarised map is empty; cam_area: fraction of the frame the binarised map covers;
    region_share, region_iou: Zhou et al.'s box against the face box (NaN as overlap).

    The maps are measured ``TASK_FRAMES`` frames at a time on ``threads`` threads (numpy
    and scipy release the GIL in this work: 1.8x on 2 cores); the table does not depend
    on ``threads``."""
    cams = [read_cam_file(path) for path in cam_paths]
    tasks = []  # (cam number, frames of the CAM file, height, width, boxes)
    found = []
    for number, (cam_path, cam) in enumerate(zip(cam_paths, cams, strict=True)):
        if cam["kind"] != "img":
            raise UserError(
                f"{cam_path}: maps of {cam['kind']} inputs; the face overlap needs maps of "
                "whole frames (kind img: sources img and img_gradcam)"
            )
        found.append(np.zeros(len(cam["row"]), dtype=bool))
        for face_no, frame_no, at in _shard_rows(cam, cam_path, faces, frames):
            height, width = frames_file.read_frame_size(frames[frame_no])
            boxes = _face_boxes(faces[face_no], cam["row"][at], cam_path)
            found[number][at] = np.isfinite(boxes).all(axis=1)
            for start in range(0, len(at), TASK_FRAMES):
                part = slice(start, start + TASK_FRAMES)
                tasks.append((number, at[part], height, width, boxes[part]))
    measures = [
        {name: np.full((len(cam["row"]), len(cam["traits"])), np.nan) for name in MEASURES}
        for cam in cams
    ]

    def measure(task):
        number, at, height, width, boxes = task
        return frame_cam_measures(cams[number]["maps"][at], boxes, height, width, threshold)

    with ThreadPoolExecutor(max(1, int(threads))) as pool:
        results = pool.map(measure, tasks)  # in task order
        bar = tqdm(total=sum(len(t[1]) for t in tasks), desc="CAM overlap", unit="frame",
                   disable=not progress)  # fmt: skip
        for (number, at, *_), got in zip(tasks, results, strict=True):
            for name, values in measures[number].items():
                values[at] = got[name]
            bar.update(len(at))
        bar.close()
    parts = [_overlap_rows(cam, found[number], measures[number]) for number, cam in enumerate(cams)]
    if not parts:
        return pd.DataFrame(columns=list(OVERLAP_COLUMNS))
    return pd.concat(parts, ignore_index=True).loc[:, list(OVERLAP_COLUMNS)]


def _shard_rows(cam: dict, cam_path, faces, frames):
    """(the shard's number among the faces files, among the frames files, the CAM file's
    frames of it) per shard the CAM file refers to."""
    shards = sorted(set(cam["shard_file"]))
    face_no = shard_lookup(shards, faces, "faces", cam_path, CAM_RULE)
    frame_no = shard_lookup(shards, frames, "frames", cam_path, CAM_RULE)
    for shard in shards:
        at = np.flatnonzero(cam["shard_file"] == shard)
        yield face_no[shard], frame_no[shard], at


def _face_boxes(faces_path, rows: np.ndarray, cam_path) -> np.ndarray:
    """The face boxes (len(rows), 4) float64 of these rows of a faces file."""
    box = faces_file.read_boxes(faces_path)
    if len(rows) and rows.max() >= len(box):
        raise UserError(
            f"{faces_path}: {len(box)} face rows, but {cam_path} refers to "
            f"row {rows.max()}; {rebuild_hint(cam_path, CAM_RULE)}"
        )
    return box[rows].astype(np.float64)


def _overlap_rows(cam: dict, found: np.ndarray, measures: dict) -> pd.DataFrame:
    """The table's rows of one CAM file: frame by frame, trait by trait."""
    n, traits = len(cam["row"]), cam["traits"]
    return pd.DataFrame(
        {
            "source": cam["source"],
            "video_id": np.repeat(cam["video_id"], len(traits)),
            "frame_index": np.repeat(cam["frame_index"], len(traits)),
            "trait": np.tile(np.array(traits, dtype=object), n),
            "face_found": np.repeat(found, len(traits)),
            **{name: values.reshape(-1) for name, values in measures.items()},
        }
    )


def write_overlap_tables(
    table: pd.DataFrame, summary: pd.DataFrame, table_path: str | Path, summary_path: str | Path
) -> None:
    """Both TSVs atomically: 6 decimals, empty cells for NaN, booleans as true/false."""
    out = table.astype({"face_found": bool})
    write_tsv(out, table_path, "%.6f")
    write_tsv(summary, summary_path, "%.6f")
