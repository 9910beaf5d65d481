"""Score the interpretability results against the demo's planted truth (docs/architecture.md).

The demo data set knows what it planted: the true face box of every frame, the boxes of
the regions whose pixels the planted AUs move, which AUs drive the traits. Every check
comes with a positive control (a correct analysis passes it) and a negative control (a
broken or null one fails it); docs/validation.md lists them. ``validation/planted.json``
(the contract's keys first):

- CAM (cam/img.h5, the frame model's maps), each share over the scored (frame, trait)
  maps (finite overlap: a true box and a non-empty binarised map):
  ``cam_true_face_overlap_share``: overlap >= ``min_overlap`` with the TRUE face box
  (docs/method.md §2's measure, against the truth instead of the detector);
  ``cam_true_face_peak_share``: the pointing game, the map's peak inside the true box;
  ``cam_true_face_region_share``: Zhou et al.'s box (the largest connected component of
  the binarised map) lies >= ``min_overlap`` inside the true box.
  Positive control ``cam_ideal_overlap_share``: an ideal map, the union of the signal
  regions' true boxes area-averaged onto the map's h x w grid, through the same measure.
  Negative controls: ``cam_offface_overlap_share`` (the trained maps rolled by half the
  map's height and width, off the face), ``cam_random_weights_overlap_share`` (maps of
  an untrained network of the same architecture, input ``cam_random``);
  ``cam_mirrored_overlap_share`` (the maps flipped left-right: a face near the middle
  stays under them, so it is no control; no goal). ``gradcam_...``: Grad-CAM of DAN+.
- ``detector_precision``: of the units the spatial histogram calls region detectors, the
  share whose region carries planted signal, with its Wilson 95% interval
  (``detector_precision_ci_low`` / ``_ci_high``) and ``n_detectors``; the same with
  Network Dissection (``detector_precision_netdissect``); ``detector_precision_chance``,
  what detectors spread at random would score; ``n_detectors_random_init`` (input
  ``detectors_random``: the table of an untrained network; few detectors should
  appear there); ``detector_ceilings`` (input ``ceilings``: the score a perfect
  detector of each region reaches at each layer's map size) and ``detector_au_r_median``
  (per region, the median over its detectors of the frame-level Pearson r between the
  unit's max activation and the region's planted AU; tables/planted_detectors.tsv).
- AU emergence (tables/au_emergence.tsv): ``planted_aus_significant_share`` /
  ``unplanted_aus_significant_share`` from the table's ``significant`` verdict (q_bh <
  alpha; p < alpha in older tables), unplanted = the AUs not planted and not coupled to a
  planted one (``coupled_aus``: |cross_talk_r| >= ``coupling_r`` in validation/aus.tsv);
  ``coupled_aus_significant_share``; ``decoy_aus_significant_share`` (the decoy tracks of
  the planted AUs); ``paper_unplanted_aus_significant_share`` (the paper's p < alpha);
  ``random_init_planted_aus_significant_share`` (input ``emergence_random``) and
  ``truth_planted_aus_significant_share`` (input ``emergence_truth``: the test on the
  planted values themselves, corrected over the verdict's family of AUs:
  :func:`truth_in_verdict_family`); ``planted_au_i_max``: trained and untrained I_max side by
  side. The truth names py-feat AUs; our tables carry OpenFace's AU45 in place of
  py-feat's AU43 (:func:`traitlens.aus.estimate_aus.derive_au45`), so a planted AU43 is
  scored as AU45.
- ``null_false_positive_rate``: the rate at which the cluster-aware verdict fires on
  null data sets (AU tracks given to random videos; the null table's
  ``cluster_false_positive_rate``, row 'all'): it calibrates the implementation;
  ``paper_null_false_positive_rate``: the paper's test under frames shuffled over the
  data set; ``null_within_video_false_positive_rate``: the same with frames shuffled only
  within their video (a diagnostic).

A goal whose value is null (its input absent, nothing to score) is not measured
(``met: null``), never met.

True boxes are in the video's own pixels; the stored frame holds the video scaled into
its ``content_box`` (x, y, w, h), so a point maps as x' = x + (u + 0.5) * w / W - 0.5
(pixel centres, (0, 0) the centre of the top-left pixel, as the faces files and
:mod:`traitlens.interpret.cam_face_overlap` use).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core.errors import UserError
from traitlens.core.tables import read_table
from traitlens.demo.au_validation import pearson
from traitlens.evaluation.proportions import wilson_interval
from traitlens.extract.frames_file import read_geometry
from traitlens.interpret.au_emergence import DECOY_SUFFIX  # the decoy rows' names
from traitlens.interpret.emergence_stats import benjamini_hochberg

log = logging.getLogger("traitlens.demo.planted")

CONTRACT_KEYS = (
    "cam_true_face_overlap_share",
    "detector_precision",
    "planted_aus_significant_share",
    "unplanted_aus_significant_share",
    "null_false_positive_rate",
)
# planted.json's accuracy keys (null when the accuracy input is absent)
ACCURACY_KEYS = (
    "img_test_mae_ratio",
    "face_test_mae_ratio",
    "aus_test_mae_ratio",
    "oracle_visual_test_mae_ratio",
    "oracle_all_test_mae_ratio",
    "oracle_visual_shuffled_test_mae_ratio",
    "landmark_ridge_test_mae_ratio",
    "landmark_ridge_shuffled_test_mae_ratio",
    "face_units_ridge_test_mae_ratio",
    "face_units_ridge_random_init_test_mae_ratio",
)
TRUE_BOX_COLUMNS = ("face_x0", "face_y0", "face_x1", "face_y1")
BOX_SUFFIXES = ("x0", "y0", "x1", "y1")
# The goals. (op, target): value op target; ("<=", f, key): value <= f x doc[key];
# ("in", (lo, hi)): lo <= value <= hi.
GOALS: dict[str, tuple] = {
    "cam_ideal_overlap_share": (">=", 0.95),
    "cam_offface_overlap_share": ("<=", 0.20),
    "cam_random_weights_overlap_share": ("<=", 0.20),
    "cam_true_face_overlap_share": (">=", 0.70),
    "cam_true_face_peak_share": (">=", 0.90),
    "detector_precision": (">=", 0.90),
    "n_detectors": (">=", 10),
    "detector_precision_ci_low": (">=", 0.75),
    "n_detectors_random_init": ("<=", 0.10, "n_detectors"),
    "planted_aus_significant_share": (">=", 0.75),
    "unplanted_aus_significant_share": ("<=", 0.10),
    "decoy_aus_significant_share": ("<=", 0.10),
    "null_false_positive_rate": ("in", (0.0, 0.02)),
    "random_init_planted_aus_significant_share": ("<=", 0.50),
    # accuracy on new people (demo/accuracy_ceiling.py): the models, then the controls
    "img_test_mae_ratio": ("<=", 0.70),
    "face_test_mae_ratio": ("<=", 0.70),
    "oracle_visual_test_mae_ratio": ("<=", 0.70),
    "oracle_visual_shuffled_test_mae_ratio": (">=", 0.90),
}
# checks reported in tables/planted.tsv without a goal (diagnostics and the mirrored map)
DIAGNOSTICS = (
    "cam_mirrored_overlap_share",
    "cam_true_face_region_share",
    "gradcam_true_face_overlap_share",
    "gradcam_true_face_peak_share",
    "detector_precision_netdissect",
    "detector_precision_ci_high",
    "coupled_aus_significant_share",
    "paper_unplanted_aus_significant_share",
    "truth_planted_aus_significant_share",
    "null_within_video_false_positive_rate",
    "aus_test_mae_ratio",
    "oracle_all_test_mae_ratio",
    "landmark_ridge_test_mae_ratio",
    "landmark_ridge_shuffled_test_mae_ratio",
    "face_units_ridge_test_mae_ratio",
    "face_units_ridge_random_init_test_mae_ratio",
)
TABLE_COLUMNS = ("check", "value", "goal", "met", "note", "value_random_init")
TABLE_AU_NAME = {"AU43": "AU45"}  # py-feat name in the truth -> name in our AU tables
DETECTOR_R_COLUMNS = (
    "layer", "unit", "region", "score", "au", "r", "r_within_video", "n_frames", "n_videos",
)  # fmt: skip


# --- reading the inputs -------------------------------------------------------------------


def load_truth(path: str | Path) -> dict:
    """planted.json of the demo's ground truth (needs planted_aus and regions)."""
    path = Path(path)
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
        planted, regions = truth["planted_aus"], truth["regions"]
        bad = [r for r, v in regions.items() if "carries_signal" not in v]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise UserError(
            f"{path}: not the demo's planted.json ({err}); dataset.format demo writes it "
            "(rule generate_demo)"
        ) from None
    if not isinstance(planted, Mapping) or bad:
        raise UserError(
            f"{path}: planted_aus must be an object and every region needs carries_signal"
        )
    return truth


def signal_regions(truth: Mapping) -> list[str]:
    """The regions that carry planted signal, in the truth's order."""
    return [str(r) for r, v in truth["regions"].items() if bool(v["carries_signal"])]


def region_aus(truth: Mapping) -> dict[str, list[str]]:
    """Per region, the planted AUs (truth names) that move it: the region's planted_aus,
    else the AUs whose spec names the region; [] for a region without signal."""
    out = {}
    for region, spec in truth["regions"].items():
        listed = spec.get("planted_aus") if isinstance(spec, Mapping) else None
        if listed is None:
            listed = [
                a
                for a, v in truth["planted_aus"].items()
                if isinstance(v, Mapping) and v.get("region") == region
            ]
        out[str(region)] = [str(a) for a in listed]
    return out


def region_box_columns(regions: Sequence[str]) -> list[str]:
    return [f"{r}_{c}" for r in regions for c in BOX_SUFFIXES]


def read_truth_frames(path: str | Path, regions: Sequence[str] = ()) -> pd.DataFrame:
    """The ground truth's frames.tsv; with ``regions``, their box columns are required
    (<region>_x0 .. <region>_y1, frame pixels like the face box)."""
    table = read_table(
        path,
        "ground-truth frames",
        "generate_demo",
        ["video_id", "frame_index", *TRUE_BOX_COLUMNS],
        dtype={"video_id": str},
    )
    missing = [c for c in region_box_columns(regions) if c not in table]
    if missing:
        raise UserError(
            f"{path}: no boxes of the regions that carry signal (missing columns "
            f"{missing[:4]}{' ...' if len(missing) > 4 else ''}); this ground truth predates "
            "them: delete the demo's ground truth and rerun generate_demo"
        )
    return table


def read_video_sizes(path: str | Path) -> pd.DataFrame:
    """video_id, width, height of every video qc/videos.tsv gives a size for."""
    table = read_table(
        path, "video QC", "summarise_qc", ["video_id", "width", "height"], dtype={"video_id": str}
    )
    table = table[["video_id", "width", "height"]].dropna()
    return table.astype({"width": float, "height": float})


def read_frame_geometry(frame_paths: Sequence[str | Path]) -> pd.DataFrame:
    """Per video: its content box (content_x, content_y, content_w, content_h) and the
    stored frame size (frame_width, frame_height) from the frames shard files."""
    parts = []
    for path in frame_paths:
        ids, box, height, width = read_geometry(path)
        if len(ids) != len(box):
            raise UserError(
                f"{path}: {len(ids)} video ids but {len(box)} content boxes; rerun extract_shard"
            )
        part = pd.DataFrame(box, columns=["content_x", "content_y", "content_w", "content_h"])
        part.insert(0, "video_id", ids)
        part["frame_width"], part["frame_height"] = width, height
        parts.append(part)
    geometry = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if geometry.empty:
        raise UserError("validate_planted: no frames shard file given (input frames)")
    if geometry["video_id"].duplicated().any():
        dup = geometry.loc[geometry["video_id"].duplicated(), "video_id"].iloc[0]
        raise UserError(
            f"frames files: video {dup} is in two shard files; the frames input mixes data sets"
        )
    return geometry


# --- geometry -----------------------------------------------------------------------------


def map_boxes(
    boxes: np.ndarray, video_width: np.ndarray, video_height: np.ndarray, content: np.ndarray
) -> np.ndarray:
    """Boxes (N, 4) x0, y0, x1, y1 in video pixels -> stored-frame pixels, through each
    row's content box (N, 4) x, y, w, h; video sizes (N,) or scalars. Pixel centres:
    u -> x + (u + 0.5) * w / W - 0.5."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    content = np.broadcast_to(np.asarray(content, dtype=np.float64), boxes.shape)
    sx = content[:, 2] / np.asarray(video_width, dtype=np.float64)
    sy = content[:, 3] / np.asarray(video_height, dtype=np.float64)
    out = np.empty_like(boxes)
    for col, (offset, scale) in enumerate(
        [(content[:, 0], sx), (content[:, 1], sy), (content[:, 0], sx), (content[:, 1], sy)]
    ):
        out[:, col] = offset + (boxes[:, col] + 0.5) * scale - 0.5
    return out


def stored_boxes(
    keys: pd.DataFrame,
    truth_frames: pd.DataFrame,
    geometry: pd.DataFrame,
    sizes: pd.DataFrame,
    regions: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """({'face': true face boxes (N, 4), <region>: that region's true boxes (N, 4)} in
    stored-frame pixels, frame height (N,), frame width (N,)) for ``keys`` (video_id,
    frame_index); NaN boxes where the truth has no such frame."""
    left = pd.DataFrame(
        {"video_id": keys["video_id"].astype(str).to_numpy(),
         "frame_index": keys["frame_index"].astype(np.int64).to_numpy()}
    )  # fmt: skip
    names = {"face": list(TRUE_BOX_COLUMNS)}
    names.update({r: [f"{r}_{c}" for c in BOX_SUFFIXES] for r in regions})
    truth = truth_frames[["video_id", "frame_index", *[c for v in names.values() for c in v]]]
    truth = truth.copy()
    truth["video_id"] = truth["video_id"].astype(str)
    truth["frame_index"] = truth["frame_index"].astype(np.int64)
    truth = truth.drop_duplicates(["video_id", "frame_index"])
    joined = left.merge(truth, on=["video_id", "frame_index"], how="left")
    joined = joined.merge(geometry, on="video_id", how="left")
    joined = joined.merge(sizes[["video_id", "width", "height"]], on="video_id", how="left")
    for what, column in (("frames shard files", "content_w"), ("video sizes", "width")):
        lost = joined.loc[joined[column].isna(), "video_id"]
        if len(lost):
            raise UserError(
                f"validate_planted: {lost.nunique()} video(s) of the CAM file (e.g. "
                f"{lost.iloc[0]}) are not in the {what}; give the rule every shard of the data set"
            )
    content = joined[["content_x", "content_y", "content_w", "content_h"]].to_numpy(dtype=float)
    width, height = joined["width"].to_numpy(dtype=float), joined["height"].to_numpy(dtype=float)
    boxes = {
        name: map_boxes(joined[columns].to_numpy(dtype=float), width, height, content)
        for name, columns in names.items()
    }
    return (
        boxes,
        joined["frame_height"].to_numpy(dtype=np.int64),
        joined["frame_width"].to_numpy(dtype=np.int64),
    )


def true_stored_boxes(
    keys: pd.DataFrame, truth_frames: pd.DataFrame, geometry: pd.DataFrame, sizes: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true face boxes (N, 4) in stored-frame pixels, frame height (N,), frame width (N,))
    of :func:`stored_boxes`."""
    boxes, heights, widths = stored_boxes(keys, truth_frames, geometry, sizes)
    return boxes["face"], heights, widths


def ideal_maps(
    region_boxes: Sequence[np.ndarray],
    height: int,
    width: int,
    map_hw: tuple[int, int],
    chunk: int = 64,
) -> np.ndarray:
    """float32 (N, 1, h, w): the map a network that looks only at the planted regions
    would draw at its h x w resolution. The union of each frame's region boxes (each
    (N, 4), stored-frame pixel centres, edges inclusive; NaN boxes add nothing) drawn on
    the height x width frame, then area-averaged onto the h x w grid: each cell = the
    share of its pixels inside the union (the map covers the whole stored frame)."""
    from traitlens.interpret.resample import area_matrix

    boxes = np.stack([np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in region_boxes], 1)
    n = len(boxes)
    ay, ax = area_matrix(height, map_hw[0]), area_matrix(width, map_hw[1])
    rows, cols = np.arange(height), np.arange(width)
    out = np.zeros((n, 1, *map_hw), dtype=np.float32)
    for start in range(0, n, chunk):
        b = boxes[start : start + chunk]  # (c, R, 4)
        in_rows = (rows >= b[..., 1:2]) & (rows <= b[..., 3:4])  # (c, R, H); NaN -> False
        in_cols = (cols >= b[..., 0:1]) & (cols <= b[..., 2:3])  # (c, R, W)
        union = (in_rows[..., :, None] & in_cols[..., None, :]).any(axis=1)  # (c, H, W)
        out[start : start + chunk, 0] = ay @ union.astype(np.float64) @ ax.T
    return out


# --- the CAM checks -----------------------------------------------------------------------


def _by_frame_size(
    maps: np.ndarray,
    boxes: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
    threshold: float,
    regions: bool,
) -> dict[str, np.ndarray]:
    """:func:`traitlens.interpret.cam_face_overlap.frame_cam_measures` of maps (N, T, h, w)
    against boxes (N, 4), frames grouped by their stored size."""
    from traitlens.interpret.cam_face_overlap import frame_cam_measures

    names = ("overlap", "region_share", "region_iou") if regions else ("overlap",)
    out = {name: np.full(maps.shape[:2], np.nan) for name in names}
    for height, width in sorted(set(zip(heights.tolist(), widths.tolist(), strict=True))):
        rows = (heights == height) & (widths == width)
        got = frame_cam_measures(maps[rows], boxes[rows], height, width, threshold, regions)
        for name in names:
            out[name][rows] = got[name]
    return out


def _share(values: np.ndarray, minimum: float) -> tuple[float, float, int]:
    """(share of the finite values >= minimum, their median, how many); NaNs when none."""
    scored = values[np.isfinite(values)]
    if not scored.size:
        return float("nan"), float("nan"), 0
    return float(np.mean(scored >= minimum)), float(np.median(scored)), int(scored.size)


def cam_true_face_overlap(
    cam_path: str | Path,
    truth_frames: pd.DataFrame,
    geometry: pd.DataFrame,
    sizes: pd.DataFrame,
    threshold: float,
    min_overlap: float,
    regions: Sequence[str] | None = None,
    controls: bool = False,
) -> dict:
    """The CAM file's maps against the true face box (see the module doc): ``share`` of
    the (frame, trait) maps with overlap >= ``min_overlap``, the counts behind it, the
    pointing game and Zhou et al.'s region. With ``controls``: the off-face (rolled) and
    mirrored maps through the same measure, and, when ``regions`` (the regions carrying
    signal, whose box columns the truth frames hold) are given, the ideal map's share."""
    from traitlens.interpret.cam_file import read_cam_file

    cam = read_cam_file(cam_path)  # checks the datasets, shapes and attributes
    keys = pd.DataFrame(
        {
            "video_id": cam["video_id"].astype(str),
            "frame_index": cam["frame_index"].astype(np.int64),
        }
    )
    maps = cam["maps"].astype(np.float32)
    map_hw = tuple(int(v) for v in maps.shape[2:])
    all_boxes, heights, widths = stored_boxes(
        keys, truth_frames, geometry, sizes, (regions or ()) if controls else ()
    )
    boxes = all_boxes["face"]
    measured = _by_frame_size(maps, boxes, heights, widths, threshold, regions=True)
    overlap = measured["overlap"]
    has_truth = np.isfinite(boxes).all(axis=1)
    scored = np.isfinite(overlap)
    share, median, n_scored = _share(overlap, min_overlap)
    region_share, _, _ = _share(measured["region_share"], min_overlap)
    # as for the overlap, a map with nothing positive (Grad-CAM after its ReLU) has no peak
    has_peak = has_truth[:, None] & (maps.max(axis=(2, 3)) > 0)
    peak = peak_in_box(maps, boxes, heights, widths)[has_peak]
    out = {
        "share": share,
        "n_maps": int(overlap.size),
        "n_scored": n_scored,
        "n_no_truth": int((~has_truth).sum()) * maps.shape[1],
        "n_empty": int((has_truth[:, None] & ~scored).sum()),
        "median_overlap": median,
        "map_height": map_hw[0],
        "map_width": map_hw[1],
        # the pointing game (Zhang et al. ECCV'16): the map's peak inside the true box
        "peak_in_face_share": float(peak.mean()) if peak.size else float("nan"),
        # Zhou et al.'s box: the largest connected component's bounding box
        "region_share": region_share,
        "region_median_iou": _share(measured["region_iou"], 0.0)[1],
    }
    if not controls:
        return out
    # off the face: every map moved cyclically by half its height and width
    rolled = np.roll(maps, (map_hw[0] // 2, map_hw[1] // 2), axis=(2, 3))
    off = _by_frame_size(rolled, boxes, heights, widths, threshold, regions=True)
    out["offface_share"], out["offface_median_overlap"], _ = _share(off["overlap"], min_overlap)
    out["offface_region_share"] = _share(off["region_share"], min_overlap)[0]
    mirrored = _by_frame_size(maps[..., ::-1], boxes, heights, widths, threshold, regions=False)
    out["mirrored_share"], out["mirrored_median_overlap"], _ = _share(
        mirrored["overlap"], min_overlap
    )
    out["ideal_share"] = out["ideal_median_overlap"] = float("nan")
    out["ideal_n_scored"] = 0
    if regions:
        ideal = np.full((len(maps), 1), np.nan)
        for height, width in sorted(set(zip(heights.tolist(), widths.tolist(), strict=True))):
            rows = (heights == height) & (widths == width) & has_truth
            if rows.any():
                drawn = ideal_maps([all_boxes[r][rows] for r in regions], height, width, map_hw)
                got = _by_frame_size(
                    drawn, boxes[rows], heights[rows], widths[rows], threshold, regions=False
                )
                ideal[rows] = got["overlap"]
        out["ideal_share"], out["ideal_median_overlap"], out["ideal_n_scored"] = _share(
            ideal, min_overlap
        )
    return out


def peak_in_box(
    maps: np.ndarray, boxes: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> np.ndarray:
    """bool (N, T): the peak of each map (N, T, h, w) lies inside the frame's box (N, 4).
    A bilinearly upsampled map peaks at its largest cell's centre, so no upsampling."""
    n, t, h, w = maps.shape
    flat = maps.reshape(n, t, -1).argmax(axis=-1)
    row, col = np.unravel_index(flat, (h, w))
    # cell centre -> frame pixel centres, (0, 0) the centre of the top-left pixel
    y = (row + 0.5) * (heights[:, None] / h) - 0.5
    x = (col + 0.5) * (widths[:, None] / w) - 0.5
    b = boxes[:, None, :]
    return (x >= b[..., 0]) & (x <= b[..., 2]) & (y >= b[..., 1]) & (y <= b[..., 3])


# --- the detector checks ------------------------------------------------------------------


def _flags(column: pd.Series) -> np.ndarray:
    if column.dtype == bool:
        return column.to_numpy()
    return column.astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()


def detector_precision(detectors: pd.DataFrame, regions: Mapping, column: str) -> dict:
    """Of the rows flagged in ``column`` (a unit called a region's detector), the share
    whose region carries planted signal, with its Wilson 95% interval (units are
    separate trials: each unit is counted once, for its best region); NaN when nothing
    is flagged."""
    flagged = detectors.loc[_flags(detectors[column]), "region"].astype(str)
    carries = {str(r): bool(v["carries_signal"]) for r, v in regions.items()}
    hits = flagged.map(lambda r: carries.get(r, False))
    low, high = wilson_interval(int(hits.sum()), int(len(flagged)))
    return {
        "precision": float(hits.mean()) if len(flagged) else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "n": int(len(flagged)),
        "by_region": {str(r): int(c) for r, c in flagged.value_counts().sort_index().items()},
        "unknown_regions": sorted(set(flagged) - set(carries)),
    }


def count_detectors(detectors: pd.DataFrame | None, column: str = "histogram_detector"):
    """How many units ``column`` flags; None without a table."""
    if detectors is None:
        return None
    return int(_flags(detectors[column]).sum())


def _within_video(values: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """values minus their video's mean (what varies from frame to frame inside a video)."""
    frame = pd.DataFrame({"v": videos, "x": values})
    return values - frame.groupby("v")["x"].transform("mean").to_numpy()


def detector_au_correlations(
    detectors: pd.DataFrame,
    dumps: Sequence[str | Path],
    truth_frames: pd.DataFrame,
    truth: Mapping,
) -> pd.DataFrame:
    """tables/planted_detectors.tsv: one row per histogram detector, the frame-level
    Pearson r between its unit's ``max`` activation (the face model's dumps) and the
    planted intensity of every planted AU (``r_<AU>``, truth names), over the dumped
    frames the truth has (matched on video_id, frame_index). ``au`` / ``r``: of its
    region's planted AUs, the one with the largest |r| (mouth: AU12 or AU26), NaN for a
    region without signal (nose); ``r_within_video``: the same r after removing each
    video's mean from both sides (frame-level co-variation only, not which video or
    person the frames come from). Columns: DETECTOR_R_COLUMNS then r_<AU>."""
    from traitlens.interpret.dump_file import dump_info, read_keys, read_reduction

    planted = [str(a) for a in truth["planted_aus"]]
    r_columns = [f"r_{a}" for a in planted]
    columns = [*DETECTOR_R_COLUMNS, *r_columns]
    missing = [a for a in planted if a not in truth_frames]
    if missing:
        raise UserError(
            f"ground-truth frames: no planted intensity columns {missing}; rerun generate_demo"
        )
    found = detectors[_flags(detectors["histogram_detector"])]
    if found.empty:
        return pd.DataFrame(columns=columns)
    by_layer = {}
    for path in dumps:
        info = dump_info(path)
        if str(info.get("kind")) != "face":
            raise UserError(
                f"{path}: a dump of a {info.get('kind')} model; validate_planted needs the face "
                "model's dumps (input dumps)"
            )
        by_layer[str(info["layer"])] = path
    lost = sorted(set(found["layer"].astype(str)) - set(by_layer))
    if lost:
        raise UserError(
            f"validate_planted: no dump of layer(s) {lost} among the input dumps, though the "
            "detector table names them; give the rule the dumps find_detectors read"
        )
    aus_of = region_aus(truth)
    truth_au = truth_frames[["video_id", "frame_index", *planted]].copy()
    truth_au["video_id"] = truth_au["video_id"].astype(str)
    truth_au["frame_index"] = truth_au["frame_index"].astype(np.int64)
    truth_au = truth_au.drop_duplicates(["video_id", "frame_index"])
    rows = []
    for layer, part in found.groupby(found["layer"].astype(str), sort=False):
        keys = read_keys(by_layer[layer])[["video_id", "frame_index"]]
        keys["video_id"] = keys["video_id"].astype(str)
        keys["frame_index"] = keys["frame_index"].astype(np.int64)
        joined = keys.reset_index().merge(truth_au, on=["video_id", "frame_index"], how="inner")
        activation = read_reduction(by_layer[layer], "max")[joined["index"].to_numpy()]
        videos = joined["video_id"].to_numpy()
        for det in part.itertuples(index=False):
            unit = int(det.unit)
            x = activation[:, unit].astype(np.float64)
            r_au = {a: pearson(x, joined[a].to_numpy(dtype=float)) for a in planted}
            own = [a for a in aus_of.get(str(det.region), []) if a in r_au]
            best = (
                max(own, key=lambda a: abs(r_au[a]) if np.isfinite(r_au[a]) else -1.0)
                if own
                else ""
            )
            within = (
                pearson(
                    _within_video(x, videos), _within_video(joined[best].to_numpy(float), videos)
                )
                if best
                else float("nan")
            )
            rows.append(
                {
                    "layer": layer,
                    "unit": unit,
                    "region": str(det.region),
                    "score": float(getattr(det, "score", float("nan"))),
                    "au": best,
                    "r": r_au[best] if best else float("nan"),
                    "r_within_video": within,
                    "n_frames": len(joined),
                    "n_videos": int(pd.Series(videos).nunique()),
                    **{f"r_{a}": r_au[a] for a in planted},
                }
            )
    return pd.DataFrame(rows, columns=columns)


def detector_r_medians(table: pd.DataFrame, truth: Mapping) -> dict[str, dict]:
    """Per region carrying signal: {median_r, median_abs_r, median_r_within_video,
    n_detectors}; medians None when the region has no detector."""
    out = {}
    for region in signal_regions(truth):
        part = table[table["region"] == region]
        r = part["r"].to_numpy(dtype=float)
        within = part["r_within_video"].to_numpy(dtype=float)
        r, within = r[np.isfinite(r)], within[np.isfinite(within)]
        out[region] = {
            "median_r": float(np.median(r)) if r.size else None,
            "median_abs_r": float(np.median(np.abs(r))) if r.size else None,
            "median_r_within_video": float(np.median(within)) if within.size else None,
            "n_detectors": int(len(part)),
        }
    return out


def ceiling_summary(ceilings: pd.DataFrame | None) -> tuple[list[dict], dict[str, list[str]]]:
    """(rows of tables/detector_ceilings.tsv as dicts, per layer the regions no unit can
    reach at its map size)."""
    if ceilings is None:
        return [], {}
    reachable = _flags(ceilings["reachable"])
    rows = [
        {
            "layer": str(r.layer),
            "map_height": int(r.map_height),
            "map_width": int(r.map_width),
            "region": str(r.region),
            "ceiling": float(r.ceiling),
            "reachable": bool(ok),
        }
        for r, ok in zip(ceilings.itertuples(index=False), reachable, strict=True)
    ]
    unreachable: dict[str, list[str]] = {}
    for row in rows:
        if not row["reachable"]:
            unreachable.setdefault(row["layer"], []).append(row["region"])
    return rows, unreachable


# --- the AU-emergence checks --------------------------------------------------------------


def planted_table_aus(truth: Mapping) -> list[str]:
    """The planted AUs under the names our AU tables use (AU43 -> AU45)."""
    return sorted({TABLE_AU_NAME.get(a, a) for a in truth["planted_aus"]})


def _table_name(au: str) -> str:
    """An emergence row's AU under our table names (a truth-side AU43 -> AU45, decoys too)."""
    base, decoy = (au[: -len(DECOY_SUFFIX)], True) if au.endswith(DECOY_SUFFIX) else (au, False)
    base = TABLE_AU_NAME.get(base, base)
    return base + DECOY_SUFFIX if decoy else base


def coupled_aus(
    validation: pd.DataFrame | None, unplanted: Sequence[str], coupling_r: float
) -> tuple[list[str], list[str]]:
    """(the unplanted AUs whose estimate follows a planted AU: |cross_talk_r| >=
    ``coupling_r`` in validation/aus.tsv, the unplanted AUs that table lacks)."""
    if validation is None:
        return [], []
    inverse = {v: k for k, v in TABLE_AU_NAME.items()}
    cross = dict(
        zip(
            validation["au"].astype(str),
            pd.to_numeric(validation["cross_talk_r"], errors="coerce"),
            strict=True,
        )
    )
    coupled, missing = [], []
    for au in unplanted:
        r = cross.get(inverse.get(au, au))
        if r is None:
            missing.append(au)
        elif np.isfinite(r) and abs(r) >= coupling_r:
            coupled.append(au)
    return coupled, missing


def au_significance(
    emergence: pd.DataFrame, planted: Sequence[str], alpha: float, coupled: Sequence[str] = ()
) -> dict:
    """Which AUs of the emergence table are significant, planted or not (see the module
    doc). The verdict is the table's ``significant`` column (q_bh < alpha); a table
    without it falls back to p < alpha (``fallback`` True). ``paper``: p < alpha, the
    paper's test, whatever the table says. Rows ``<AU>_decoy`` are decoy tracks, scored
    apart; ``coupled`` unplanted AUs are left out of the unplanted share."""
    emergence = emergence.assign(au=emergence["au"].astype(str).map(_table_name))
    log10_p = (
        pd.to_numeric(emergence["log10_p"], errors="coerce").to_numpy(dtype=float)
        if "log10_p" in emergence
        else np.full(len(emergence), np.nan)
    )
    # a p printed as 0 has its finite log10_p; fall back to p where log10_p is missing
    p_log = np.log10(np.clip(emergence["p"].to_numpy(dtype=float), 1e-300, None))
    log10_p = np.where(np.isfinite(log10_p), log10_p, p_log)
    names = emergence["au"].tolist()
    paper = dict(zip(names, log10_p < math.log10(alpha), strict=True))
    # an older table has no verdict; one written without videos has it empty (q_bh NaN)
    fallback = "significant" not in emergence or (
        "q_bh" in emergence and pd.to_numeric(emergence["q_bh"], errors="coerce").isna().all()
    )
    verdict = paper if fallback else dict(zip(names, _flags(emergence["significant"]), strict=True))
    planted_set, coupled_set = set(planted), set(coupled)
    decoys = [a for a in names if a.endswith(DECOY_SUFFIX)]
    tracks = [a for a in names if not a.endswith(DECOY_SUFFIX)]
    planted_in = [a for a in tracks if a in planted_set]
    unplanted_all = [a for a in tracks if a not in planted_set]
    unplanted = [a for a in unplanted_all if a not in coupled_set]
    coupled_in = [a for a in unplanted_all if a in coupled_set]
    planted_decoys = [a for a in decoys if a[: -len(DECOY_SUFFIX)] in planted_set]

    def share(which: list[str], by: Mapping = verdict) -> float:
        return float(np.mean([bool(by[a]) for a in which])) if which else float("nan")

    units = pd.to_numeric(emergence["unit"], errors="coerce").fillna(-1).astype(int)
    best = {
        au: (str(layer), unit)
        for au, layer, unit in zip(names, emergence["layer"], units, strict=True)
        if unit >= 0
    }
    planted_units = {best[a] for a in planted_in if verdict[a] and a in best}
    i_max = {
        str(r.au): (int(r.i_max), float(getattr(r, "expected_overlap", float("nan"))))
        for r in emergence.itertuples()
        if hasattr(r, "i_max") and pd.notna(r.i_max)
    }
    return {
        "fallback": fallback,
        "planted": planted_in,
        "planted_missing": [a for a in planted if a not in verdict],
        "planted_significant": [a for a in planted_in if verdict[a]],
        "planted_share": share(planted_in),
        "unplanted": unplanted,
        "unplanted_significant": [a for a in unplanted if verdict[a]],
        "unplanted_share": share(unplanted),
        "coupled": coupled_in,
        "coupled_significant": [a for a in coupled_in if verdict[a]],
        "coupled_share": share(coupled_in),
        "decoys": planted_decoys,
        "decoys_significant": [a for a in planted_decoys if verdict[a]],
        "decoy_share": share(planted_decoys),
        "paper_unplanted_significant": [a for a in unplanted if paper[a]],
        "paper_unplanted_share": share(unplanted, paper),
        "unplanted_sharing_planted_unit": [
            a for a in unplanted_all if verdict[a] and best.get(a) in planted_units
        ],
        "i_max": i_max,
        "significant": {a: bool(verdict[a]) for a in names},
    }


def null_rate(
    null: pd.DataFrame, source: str = "the null table", column: str = "false_positive_rate"
) -> float:
    """The pooled rate (row 'all') of a null column; NaN when the table lacks the column
    (an optional one, like the within-video null)."""
    if column not in null:
        return float("nan")
    rows = null.loc[null["au"].astype(str) == "all", column]
    if rows.empty:
        raise UserError(f"{source}: no row 'all'; rerun find_au_detectors")
    return float(rows.iloc[0])


# --- assembling the verdict ---------------------------------------------------------------


def _finite(value) -> bool:
    return isinstance(value, int | float | np.number) and math.isfinite(float(value))


def _goal_entry(doc: Mapping, key: str, spec: tuple) -> dict:
    """{op, value (the target), goal (as text), met}; met None (not measured) when the
    value or the value the target is relative to is null."""
    op, target = spec[0], spec[1]
    value = doc.get(key)
    measured = _finite(value)
    if op == "in":
        lo, hi = (float(t) for t in target)
        met = bool(lo <= float(value) <= hi) if measured else None
        return {"op": op, "value": [lo, hi], "goal": f"in [{lo:g}, {hi:g}]", "met": met}
    entry: dict = {"op": op}
    if len(spec) == 3:  # relative to another key: value op target x doc[spec[2]]
        reference = doc.get(spec[2])
        bound = float(target) * float(reference) if _finite(reference) else None
        entry.update(value=bound, factor=float(target), of=spec[2])
        entry["goal"] = f"{op} {float(target):g} x {spec[2]}"
    else:
        bound = float(target)
        entry.update(value=bound, goal=f"{op} {bound:g}")
    met = None
    if measured and bound is not None:
        met = bool(float(value) >= bound) if op == ">=" else bool(float(value) <= bound)
    entry["met"] = met
    return entry


def _get(result: Mapping | None, key: str):
    """result[key] as a float; None when there is no result (its input was absent)."""
    if result is None:
        return None
    return float(result.get(key, float("nan")))


def truth_in_verdict_family(
    emergence: pd.DataFrame, emergence_truth: pd.DataFrame, planted: Sequence[str], alpha: float
) -> dict | None:
    """The test on the planted values, corrected as the verdict is: the verdict's table
    with each planted AU's ``p_perm`` replaced by the one its planted values got,
    Benjamini-Hochberg over that whole family of AU tracks (decoys apart, as in the
    verdict), significant where q < ``alpha``. The truth's own table corrects over the
    planted AUs alone, a milder bar than the verdict's (4 tests against 17), so its
    ``significant`` column would flatter the estimated AUs' shortfall. None where either
    table has no ``p_perm``, or the truth's has none that is finite (a table written
    without videos): :func:`au_significance`'s fallback then scores it, as before."""
    if "p_perm" not in emergence or "p_perm" not in emergence_truth:
        return None

    def p_by_au(table: pd.DataFrame) -> dict[str, float]:
        names = table["au"].astype(str).map(_table_name)
        p = pd.to_numeric(table["p_perm"], errors="coerce")
        return {a: float(v) for a, v in zip(names, p, strict=True) if not a.endswith(DECOY_SUFFIX)}

    planted_set = set(planted)
    from_truth = {a: v for a, v in p_by_au(emergence_truth).items() if a in planted_set}
    if not np.isfinite(list(from_truth.values())).any():
        return None
    family = p_by_au(emergence) | from_truth
    names = list(family)
    q = dict(zip(names, benjamini_hochberg(np.array([family[a] for a in names])), strict=True))
    tested = [a for a in planted if a in from_truth]
    significant = [a for a in tested if q[a] < alpha]
    return {
        "planted_significant": significant,
        "planted_share": len(significant) / len(tested) if tested else float("nan"),
    }


def score_planted(
    truth: Mapping,
    cam: Mapping,
    gradcam: Mapping,
    detectors: pd.DataFrame,
    emergence: pd.DataFrame,
    null: pd.DataFrame,
    threshold: float,
    min_overlap: float,
    alpha: float,
    *,
    cam_random: Mapping | None = None,
    detectors_random: pd.DataFrame | None = None,
    emergence_random: pd.DataFrame | None = None,
    emergence_truth: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    coupling_r: float | None = None,
    ceilings: pd.DataFrame | None = None,
    detector_r: pd.DataFrame | None = None,
    accuracy: Mapping[str, float | None] | None = None,
) -> dict:
    """The planted.json document from the pieces (``cam``/``gradcam``/``cam_random``: the
    dicts of :func:`cam_true_face_overlap`; ``validation``: validation/aus.tsv;
    ``detector_r``: :func:`detector_au_correlations`; ``accuracy``: the test split's MAE
    ratios, ``<model>_test_mae_ratio`` keys, of :mod:`traitlens.demo.accuracy_ceiling`).
    The optional pieces are the
    optional inputs: absent, their keys are null and a note says so."""
    planted = planted_table_aus(truth)
    hist = detector_precision(detectors, truth["regions"], "histogram_detector")
    nd = detector_precision(detectors, truth["regions"], "netdissect_detector")
    tracks = [
        a
        for a in emergence["au"].astype(str).map(_table_name)
        if not a.endswith(DECOY_SUFFIX) and a not in planted
    ]
    if validation is not None and coupling_r is None:
        raise ValueError("score_planted: a validation table needs coupling_r")
    coupled, not_validated = coupled_aus(validation, tracks, coupling_r)
    sig = au_significance(emergence, planted, alpha, coupled)
    sig_random = (
        au_significance(emergence_random, planted, alpha) if emergence_random is not None else None
    )
    sig_truth = None
    if emergence_truth is not None:
        sig_truth = truth_in_verdict_family(emergence, emergence_truth, planted, alpha)
        sig_truth = sig_truth or au_significance(emergence_truth, planted, alpha)
    regions = truth["regions"]
    chance = float(np.mean([bool(v["carries_signal"]) for v in regions.values()]))
    ceiling_rows, unreachable = ceiling_summary(ceilings)
    i_max = [
        {
            "au": a,
            "i_max": sig["i_max"].get(a, (None, None))[0],
            "i_max_random_init": sig_random["i_max"].get(a, (None, None))[0]
            if sig_random
            else None,
            "expected_overlap": sig["i_max"].get(a, (None, float("nan")))[1],
            "significant": sig["significant"].get(a),
            "significant_random_init": sig_random["significant"].get(a) if sig_random else None,
        }
        for a in planted
    ]
    doc: dict = {
        "cam_true_face_overlap_share": cam["share"],
        "detector_precision": hist["precision"],
        "planted_aus_significant_share": sig["planted_share"],
        "unplanted_aus_significant_share": sig["unplanted_share"],
        # the verdict's null: the cluster-aware test on AU tracks given to random videos;
        # the paper's test under its frame-shuffling null is kept beside it
        "null_false_positive_rate": null_rate(null, column="cluster_false_positive_rate"),
        "paper_null_false_positive_rate": null_rate(null),
        # CAM: the controls, then the other measures
        "cam_ideal_overlap_share": _get(cam, "ideal_share"),
        "cam_offface_overlap_share": _get(cam, "offface_share"),
        "cam_mirrored_overlap_share": _get(cam, "mirrored_share"),
        "cam_random_weights_overlap_share": _get(cam_random, "share"),
        "cam_true_face_peak_share": cam["peak_in_face_share"],
        "cam_true_face_region_share": _get(cam, "region_share"),
        "cam_true_face_region_median_iou": _get(cam, "region_median_iou"),
        "gradcam_true_face_overlap_share": gradcam["share"],
        "gradcam_true_face_peak_share": gradcam["peak_in_face_share"],
        "gradcam_true_face_region_share": _get(gradcam, "region_share"),
        # detectors
        "detector_precision_ci_low": hist["ci_low"],
        "detector_precision_ci_high": hist["ci_high"],
        "detector_precision_netdissect": nd["precision"],
        "detector_precision_chance": chance,
        "n_detectors": hist["n"],
        "n_detectors_random_init": count_detectors(detectors_random),
        "n_detectors_netdissect": nd["n"],
        "detectors_by_region": hist["by_region"],
        "detectors_by_region_netdissect": nd["by_region"],
        "detector_au_r_median": (
            {r: v["median_r"] for r, v in detector_r_medians(detector_r, truth).items()}
            if detector_r is not None
            else None
        ),
        "detector_au_r": detector_r_medians(detector_r, truth) if detector_r is not None else None,
        "detector_ceilings": ceiling_rows,
        "detector_regions_unreachable": unreachable,
        # AU emergence
        "coupled_aus": sig["coupled"],
        "coupled_aus_significant_share": sig["coupled_share"],
        "decoy_aus_significant_share": sig["decoy_share"],
        "paper_unplanted_aus_significant_share": sig["paper_unplanted_share"],
        "random_init_planted_aus_significant_share": (
            sig_random["planted_share"] if sig_random else None
        ),
        "truth_planted_aus_significant_share": sig_truth["planted_share"] if sig_truth else None,
        "truth_planted_aus_significant": sig_truth["planted_significant"] if sig_truth else None,
        "planted_au_i_max": i_max,
        "null_within_video_false_positive_rate": null_rate(
            null, column="false_positive_rate_within_video"
        ),
        "cam": cam,
        "gradcam": gradcam,
        "cam_random_weights": cam_random,
        "planted_aus": sig["planted"],
        "planted_aus_significant": sig["planted_significant"],
        "unplanted_aus": sig["unplanted"],
        "unplanted_aus_significant": sig["unplanted_significant"],
        "coupled_aus_significant": sig["coupled_significant"],
        "decoy_aus": sig["decoys"],
        "decoy_aus_significant": sig["decoys_significant"],
        "settings": {
            "threshold": threshold,
            "min_overlap": min_overlap,
            "alpha": alpha,
            "coupling_r": coupling_r,
        },
    }
    doc.update(dict.fromkeys(ACCURACY_KEYS) | dict(accuracy or {}))
    doc["goals"] = {k: _goal_entry(doc, k, spec) for k, spec in GOALS.items()}
    doc["notes"] = _notes(doc, cam, sig, hist, nd, threshold, min_overlap, alpha)
    doc["notes"] += _absent_notes(
        cam_random, detectors_random, emergence_random, emergence_truth, validation,
        ceilings, detector_r, not_validated, coupling_r, accuracy,
    )  # fmt: skip
    return doc


def _pct(value) -> str:
    return f"{value:.0%}" if _finite(value) else "n/a"


def _num(value) -> str:
    return f"{value:.2f}" if _finite(value) else "n/a"


def _notes(doc, cam, sig, hist, nd, threshold, min_overlap, alpha) -> list[str]:
    notes = [
        f"CAM overlap: binarised at {threshold:g} of each map's max, against the true face "
        f"box (bounding box of the 478 true landmarks) mapped into the stored frame; share "
        f"over the {cam['n_scored']} scored of {cam['n_maps']} maps ({cam['n_empty']} empty, "
        f"{cam['n_no_truth']} without a true box)",
        f"positive control: an ideal map (the union of the signal regions' true boxes, "
        f"area-averaged onto the {cam.get('map_height', '?')}x{cam.get('map_width', '?')} "
        f"map grid) reaches overlap >= {min_overlap:g} in "
        f"{_pct(doc['cam_ideal_overlap_share'])} of the frames (median "
        f"{_num(cam.get('ideal_median_overlap'))})"
        + (
            "; below its goal the map resolution, not the network, limits the measure"
            if not _finite(doc["cam_ideal_overlap_share"])
            or doc["cam_ideal_overlap_share"] < GOALS["cam_ideal_overlap_share"][1]
            else ""
        ),
        f"negative control: the same maps rolled by half their height and width (off the "
        f"face) reach it in {_pct(doc['cam_offface_overlap_share'])}; mirrored left-right "
        f"(a face near the middle stays under them: no control) "
        f"{_pct(doc['cam_mirrored_overlap_share'])}",
        f"detector precision at chance (regions carrying signal / regions): "
        f"{doc['detector_precision_chance']:.2f}; Wilson 95% interval "
        f"[{_num(hist['ci_low'])}, {_num(hist['ci_high'])}] over {hist['n']} detectors",
        "planted AUs are the truth's planted_aus with py-feat AU43 scored as our AU45",
    ]
    if hist["n"] == 0:
        notes.append("no histogram detector found: detector_precision is null")
    if nd["n"] == 0:
        notes.append("no Network Dissection detector found: detector_precision_netdissect is null")
    unknown = sorted(set(hist["unknown_regions"]) | set(nd["unknown_regions"]))
    if unknown:
        notes.append(
            f"detector regions {unknown} are not in the truth: counted as carrying no signal"
        )
    for layer, names in doc["detector_regions_unreachable"].items():
        notes.append(
            f"{layer}: at its map size a perfect detector of {names} scores below min_score "
            "(tables/detector_ceilings.tsv): no unit can be called their detector there"
        )
    if sig["fallback"]:
        notes.append(
            "the emergence table has no 'significant' column (an older table): significance "
            f"is p < {alpha:g} without the correction over AUs"
        )
    if sig["planted_missing"]:
        notes.append(
            f"planted AUs {sig['planted_missing']} are not in the emergence table (config aus)"
        )
    if not sig["decoys"]:
        notes.append(
            "the emergence table has no decoy rows (<AU>_decoy): decoy_aus_significant_share "
            "is null (not measured)"
        )
    if sig["coupled"]:
        notes.append(
            f"coupled AUs {sig['coupled']} (their estimate follows a planted AU, "
            "validation/aus.tsv) are scored apart from the unplanted AUs"
        )
    within = doc["null_within_video_false_positive_rate"]
    if within is not None and math.isfinite(within) and within > 2 * alpha:
        notes.append(
            f"with frames shuffled only within their video the null's rate is {within:.2f} "
            f"(alpha {alpha:g}): overlaps this large arise from which videos (people) the "
            "frames belong to, so a significant AU need not have a frame-level detector"
        )
    if sig["unplanted_sharing_planted_unit"]:
        notes.append(
            f"unplanted AUs {sig['unplanted_sharing_planted_unit']} are significant with the "
            "best unit of a planted AU: AU-estimate cross-talk (validation/aus.tsv), not a "
            "separate detector"
        )
    return notes


def _absent_notes(
    cam_random, detectors_random, emergence_random, emergence_truth, validation, ceilings,
    detector_r, not_validated, coupling_r, accuracy,
) -> list[str]:  # fmt: skip
    absent = {
        "cam_random": (cam_random, "cam_random_weights_overlap_share"),
        "detectors_random": (detectors_random, "n_detectors_random_init"),
        "emergence_random": (emergence_random, "random_init_planted_aus_significant_share"),
        "emergence_truth": (emergence_truth, "truth_planted_aus_significant_share"),
        "ceilings": (ceilings, "detector_ceilings"),
        "dumps": (detector_r, "detector_au_r_median and face_units_ridge_test_mae_ratio"),
        "accuracy": (accuracy, "img_test_mae_ratio and the other accuracy ratios"),
        "faces": (
            (accuracy or {}).get("landmark_ridge_test_mae_ratio"),
            "landmark_ridge_test_mae_ratio",
        ),
        "dumps_random": (
            (accuracy or {}).get("face_units_ridge_random_init_test_mae_ratio"),
            "face_units_ridge_random_init_test_mae_ratio",
        ),
    }
    notes = [
        f"no input {name}: {key} is null (not measured)"
        for name, (value, key) in absent.items()
        if value is None
    ]
    if validation is None:
        notes.append("no input aus_validation: no AU counts as coupled (coupled_aus is empty)")
    elif not_validated:
        notes.append(
            f"AUs {not_validated} are not in validation/aus.tsv: counted as not coupled "
            f"(coupling: |cross_talk_r| >= {coupling_r:g})"
        )
    return notes


def planted_rows(doc: Mapping) -> pd.DataFrame:
    """tables/planted.tsv (TABLE_COLUMNS): one row per goal, then the diagnostics without
    a goal, then per planted AU its I_max (i_max_<AU>); value_random_init: the same check
    on the untrained network where there is one."""
    cam, gradcam = doc["cam"], doc["gradcam"]
    note = {
        "cam_true_face_overlap_share": f"{cam['n_scored']} maps scored; median overlap "
        f"{_num(cam['median_overlap'])}",
        "cam_ideal_overlap_share": "positive control: the signal regions' boxes at the "
        f"{cam.get('map_height', '?')}x{cam.get('map_width', '?')} map resolution",
        "cam_offface_overlap_share": "negative control: the maps rolled by half a map",
        "cam_mirrored_overlap_share": "the maps flipped left-right (no control: a face near "
        "the middle stays under them)",
        "cam_random_weights_overlap_share": "negative control: an untrained network's maps",
        "cam_true_face_peak_share": "the map's peak inside the true face box",
        "cam_true_face_region_share": "Zhou et al.'s box (largest component) inside the face",
        "gradcam_true_face_peak_share": "the map's peak inside the true face box",
        "gradcam_true_face_overlap_share": f"{gradcam['n_scored']} maps scored",
        "detector_precision": f"{doc['n_detectors']} detectors; chance "
        f"{doc['detector_precision_chance']:.2f}",
        "detector_precision_ci_low": "Wilson 95% interval of detector_precision",
        "detector_precision_ci_high": "Wilson 95% interval of detector_precision",
        "detector_precision_netdissect": f"{doc['n_detectors_netdissect']} detectors; chance "
        f"{doc['detector_precision_chance']:.2f}",
        "n_detectors_random_init": "negative control: histogram detectors of an untrained network",
        "planted_aus_significant_share": "significant: "
        + (", ".join(doc["planted_aus_significant"]) or "none")
        + f" of {', '.join(doc['planted_aus']) or 'none'}",
        "unplanted_aus_significant_share": "significant: "
        + (", ".join(doc["unplanted_aus_significant"]) or "none")
        + " (coupled AUs left out)",
        "coupled_aus_significant_share": "coupled: " + (", ".join(doc["coupled_aus"]) or "none"),
        "decoy_aus_significant_share": "negative control: decoy tracks of the planted AUs",
        "paper_unplanted_aus_significant_share": f"p < {doc['settings']['alpha']:g} (the paper)",
        "truth_planted_aus_significant_share": "positive control: the test on the planted values"
        " (corrected over the verdict's AUs)"
        + (
            "; significant: " + (", ".join(doc["truth_planted_aus_significant"]) or "none")
            if doc["truth_planted_aus_significant"] is not None
            else ""
        ),
        "random_init_planted_aus_significant_share": "negative control: an untrained network",
        "null_false_positive_rate": f"alpha {doc['settings']['alpha']:g}",
        "img_test_mae_ratio": "test MAE / train_mean's, new people (tables/accuracy.tsv)",
        "face_test_mae_ratio": "test MAE / train_mean's, new people (tables/accuracy.tsv)",
        "aus_test_mae_ratio": "the ridge on estimated AUs (tables/accuracy.tsv)",
        "oracle_visual_test_mae_ratio": "positive control: the ridge on the planted AU means",
        "oracle_all_test_mae_ratio": "the ridge on every planted driver (AUs and voice)",
        "oracle_visual_shuffled_test_mae_ratio": "negative control: the planted AU means of "
        "other people's videos",
        "landmark_ridge_test_mae_ratio": "the ridge on each video's mean aligned landmarks "
        "(what the pixels give a linear reader; faces/*.h5)",
        "landmark_ridge_shuffled_test_mae_ratio": "negative control: the mean landmarks of "
        "other people's videos",
        "face_units_ridge_test_mae_ratio": "the ridge on the face CNN's own units (map "
        "means per video; its features against its head)",
        "face_units_ridge_random_init_test_mae_ratio": "negative control: the untrained "
        "network's units",
    }
    random_init = {
        "cam_true_face_overlap_share": doc["cam_random_weights_overlap_share"],
        "n_detectors": doc["n_detectors_random_init"],
        "planted_aus_significant_share": doc["random_init_planted_aus_significant_share"],
    }

    def row(check, value, goal="", met="", text="", untrained=None) -> dict:
        return {
            "check": check,
            "value": float("nan") if value is None else value,
            "goal": goal,
            "met": met,
            "note": text,
            "value_random_init": float("nan") if untrained is None else untrained,
        }

    rows = []
    for check, goal in doc["goals"].items():
        met = "not measured" if goal["met"] is None else str(goal["met"]).lower()
        rows.append(
            row(
                check,
                doc.get(check),
                goal["goal"],
                met,
                note.get(check, ""),
                random_init.get(check),
            )
        )
    rows += [row(c, doc.get(c), text=note.get(c, "")) for c in DIAGNOSTICS]
    for entry in doc["planted_au_i_max"]:
        expected = entry["expected_overlap"]
        rows.append(
            row(
                f"i_max_{entry['au']}",
                entry["i_max"],
                text=f"I_max of {entry['au']}'s best unit; chance {_num(expected)}",
                untrained=entry["i_max_random_init"],
            )
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def json_ready(value):
    """NaN / inf -> None and numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_outputs(
    doc: Mapping,
    json_path: str | Path,
    table_path: str | Path,
    detectors_path: str | Path | None = None,
    detector_r: pd.DataFrame | None = None,
) -> None:
    """planted.json, tables/planted.tsv and (``detectors_path``) tables/planted_detectors.tsv
    (the rows of :func:`detector_au_correlations`; only the header when there are none)."""
    from traitlens.core.atomic import atomic_path, write_text_atomic, write_tsv

    write_text_atomic(json_path, json.dumps(json_ready(doc), indent=2, allow_nan=False) + "\n")
    with atomic_path(table_path) as tmp:
        planted_rows(doc).to_csv(tmp, sep="\t", index=False, na_rep="", float_format="%.4f")
    if detectors_path is not None:
        table = detector_r if detector_r is not None else pd.DataFrame(columns=DETECTOR_R_COLUMNS)
        write_tsv(table, detectors_path, "%.4f")
