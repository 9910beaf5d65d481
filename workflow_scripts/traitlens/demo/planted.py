"""Score the interpretability results against the demo's planted truth (docs/architecture.md).

The demo data set knows what it planted: the true face box of every frame, which face
regions carry signal, which AUs drive the traits. ``validation/planted.json`` answers the
design's questions with numbers (the contract's keys first):

- ``cam_true_face_overlap_share``: share of the (frame, trait) CAM maps of the frame
  model (cam/img.h5) whose binarised map lies on the TRUE face box at least
  ``min_overlap`` (docs/method.md §2's measure, against the truth instead of the detector).
  Like ``tables/cam_face_overlap.tsv`` the share is over the scored maps (finite
  overlap); empty maps and frames without a true box are counted separately.
  ``gradcam_true_face_overlap_share``: the same for Grad-CAM of DAN+ (cam/img_gradcam.h5).
  ``cam_ideal_overlap_share``: the same measure for the best map the network's resolution
  allows (each cell = the share of it the true box covers): the ceiling of the measure.
  ``cam_true_face_peak_share`` / ``gradcam_...``: the pointing game, share of maps whose
  peak lies inside the true face box (robust to the map's resolution).
- ``detector_precision``: of the units the spatial histogram calls region detectors, the
  share whose region carries planted signal (``regions[r].carries_signal``); the same
  for Network Dissection (``detector_precision_netdissect``); ``detector_precision_chance``
  is the share of regions that carry signal, what detectors spread at random would score.
- ``planted_aus_significant_share`` / ``unplanted_aus_significant_share``: share of the
  planted / other AUs of the emergence table whose best unit has p < alpha. The truth
  names py-feat AUs; our tables carry OpenFace's AU45 in place of py-feat's AU43
  (:func:`traitlens.aus.estimate_aus.derive_au45`), so a planted AU43 is scored as AU45.
- ``null_false_positive_rate``: the permutation null's pooled rate (row 'all');
  ``null_within_video_false_positive_rate``: the same with frames shuffled only within
  their video (what the video, or its person, explains; no goal, a diagnostic).

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
from traitlens.extract.frames_file import read_geometry

log = logging.getLogger("traitlens.demo.planted")

CONTRACT_KEYS = (
    "cam_true_face_overlap_share",
    "detector_precision",
    "planted_aus_significant_share",
    "unplanted_aus_significant_share",
    "null_false_positive_rate",
)
TRUE_BOX_COLUMNS = ("face_x0", "face_y0", "face_x1", "face_y1")
# Our goals: the CAM and null goals are the issue's; the others say "detectors sit in
# planted regions", "most planted AUs emerge", "few unplanted ones do" (estimated AUs share
# some signal with planted ones: cross-talk).
GOALS: dict[str, tuple[str, float]] = {
    "cam_true_face_overlap_share": (">=", 0.90),
    "gradcam_true_face_overlap_share": (">=", 0.90),
    # the pointing game: does the map's peak fall on the face at all
    "cam_true_face_peak_share": (">=", 0.90),
    "gradcam_true_face_peak_share": (">=", 0.90),
    "detector_precision": (">=", 0.90),
    "detector_precision_netdissect": (">=", 0.90),
    "planted_aus_significant_share": (">=", 0.75),
    "unplanted_aus_significant_share": ("<=", 0.25),
    "null_false_positive_rate": ("<=", 0.05),
}
TABLE_AU_NAME = {"AU43": "AU45"}  # py-feat name in the truth -> name in our AU tables


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


def read_truth_frames(path: str | Path) -> pd.DataFrame:
    return read_table(
        path,
        "ground-truth frames",
        "generate_demo",
        ["video_id", "frame_index", *TRUE_BOX_COLUMNS],
        dtype={"video_id": str},
    )


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


def true_stored_boxes(
    keys: pd.DataFrame, truth_frames: pd.DataFrame, geometry: pd.DataFrame, sizes: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true boxes (N, 4) in stored-frame pixels, frame height (N,), frame width (N,))
    for ``keys`` (video_id, frame_index); NaN boxes where the truth has no such frame."""
    left = pd.DataFrame(
        {"video_id": keys["video_id"].astype(str).to_numpy(),
         "frame_index": keys["frame_index"].astype(np.int64).to_numpy()}
    )  # fmt: skip
    truth = truth_frames[["video_id", "frame_index", *TRUE_BOX_COLUMNS]].copy()
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
    boxes = map_boxes(
        joined[list(TRUE_BOX_COLUMNS)].to_numpy(dtype=float),
        joined["width"].to_numpy(dtype=float),
        joined["height"].to_numpy(dtype=float),
        content,
    )
    return (
        boxes,
        joined["frame_height"].to_numpy(dtype=np.int64),
        joined["frame_width"].to_numpy(dtype=np.int64),
    )


# --- the checks ---------------------------------------------------------------------------


def cam_true_face_overlap(
    cam_path: str | Path,
    truth_frames: pd.DataFrame,
    geometry: pd.DataFrame,
    sizes: pd.DataFrame,
    threshold: float,
    min_overlap: float,
) -> dict:
    """Share of the CAM file's (frame, trait) maps with overlap >= ``min_overlap``
    against the true face box, with the counts behind it (see the module doc)."""
    from traitlens.interpret.cam_face_overlap import frame_overlaps
    from traitlens.interpret.cam_file import read_cam_file

    cam = read_cam_file(cam_path)  # checks the datasets, shapes and attributes
    keys = pd.DataFrame(
        {
            "video_id": cam["video_id"].astype(str),
            "frame_index": cam["frame_index"].astype(np.int64),
        }
    )
    maps = cam["maps"].astype(np.float32)
    boxes, heights, widths = true_stored_boxes(keys, truth_frames, geometry, sizes)
    overlap = np.full(maps.shape[:2], np.nan)
    for height, width in sorted(set(zip(heights.tolist(), widths.tolist(), strict=True))):
        rows = (heights == height) & (widths == width)
        overlap[rows] = frame_overlaps(maps[rows], boxes[rows], height, width, threshold)
    has_truth = np.isfinite(boxes).all(axis=1)
    scored = np.isfinite(overlap)
    n_scored = int(scored.sum())
    share = float((overlap[scored] >= min_overlap).mean()) if n_scored else float("nan")
    # as for the overlap, a map with nothing positive (Grad-CAM after its ReLU) has no peak
    has_peak = has_truth[:, None] & (maps.max(axis=(2, 3)) > 0)
    peak = peak_in_box(maps, boxes, heights, widths)[has_peak]
    ideal = np.full(len(maps), np.nan)
    for height, width in sorted(set(zip(heights.tolist(), widths.tolist(), strict=True))):
        rows = ((heights == height) & (widths == width)) & has_truth
        if rows.any():
            ideal_maps = box_coverage_maps(boxes[rows], height, width, maps.shape[2:])
            ideal[rows] = frame_overlaps(ideal_maps, boxes[rows], height, width, threshold)[:, 0]
    ideal = ideal[np.isfinite(ideal)]
    return {
        "share": share,
        "n_maps": int(overlap.size),
        "n_scored": n_scored,
        "n_no_truth": int((~has_truth).sum()) * maps.shape[1],
        "n_empty": int((has_truth[:, None] & ~scored).sum()),
        "median_overlap": float(np.median(overlap[scored])) if n_scored else float("nan"),
        # the pointing game (Zhang et al. ECCV'16): the map's peak inside the true box
        "peak_in_face_share": float(peak.mean()) if peak.size else float("nan"),
        # the same overlap measure for the best map the resolution allows
        "ideal_share": float((ideal >= min_overlap).mean()) if ideal.size else float("nan"),
        "ideal_median_overlap": float(np.median(ideal)) if ideal.size else float("nan"),
    }


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


def box_coverage_maps(
    boxes: np.ndarray, height: int, width: int, map_hw: tuple[int, int]
) -> np.ndarray:
    """(N, 1, h, w): the share of each map cell covered by the box (pixel-centre boxes
    grown by half a pixel to pixel edges): the CAM a perfect face detector would draw
    at this resolution, i.e. the ceiling of the overlap measure."""
    h, w = map_hw
    edges_y = np.arange(h + 1) * height / h - 0.5
    edges_x = np.arange(w + 1) * width / w - 0.5

    def cover(lo, hi, edges):
        inter = np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1])
        return np.clip(inter, 0, None) / np.diff(edges)[None, :]

    cy = cover(boxes[:, 1] - 0.5, boxes[:, 3] + 0.5, edges_y)
    cx = cover(boxes[:, 0] - 0.5, boxes[:, 2] + 0.5, edges_x)
    return (cy[:, :, None] * cx[:, None, :])[:, None].astype(np.float32)


def _flags(column: pd.Series) -> np.ndarray:
    if column.dtype == bool:
        return column.to_numpy()
    return column.astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()


def detector_precision(detectors: pd.DataFrame, regions: Mapping, column: str) -> dict:
    """Of the rows flagged in ``column`` (a unit called a region's detector), the share
    whose region carries planted signal; NaN when nothing is flagged."""
    flagged = detectors.loc[_flags(detectors[column]), "region"].astype(str)
    carries = {str(r): bool(v["carries_signal"]) for r, v in regions.items()}
    hits = flagged.map(lambda r: carries.get(r, False))
    return {
        "precision": float(hits.mean()) if len(flagged) else float("nan"),
        "n": int(len(flagged)),
        "by_region": {str(r): int(c) for r, c in flagged.value_counts().sort_index().items()},
        "unknown_regions": sorted(set(flagged) - set(carries)),
    }


def planted_table_aus(truth: Mapping) -> list[str]:
    """The planted AUs under the names our AU tables use (AU43 -> AU45)."""
    return sorted({TABLE_AU_NAME.get(a, a) for a in truth["planted_aus"]})


def au_significance(emergence: pd.DataFrame, planted: Sequence[str], alpha: float) -> dict:
    """Which AUs of the emergence table are significant (p < alpha), planted or not."""
    log10_p = (
        emergence["log10_p"].to_numpy(dtype=float)
        if "log10_p" in emergence
        else np.log10(emergence["p"].to_numpy(dtype=float))
    )
    # a p printed as 0 has its finite log10_p; fall back to p where log10_p is missing
    p_log = np.log10(np.clip(emergence["p"].to_numpy(dtype=float), 1e-300, None))
    log10_p = np.where(np.isfinite(log10_p), log10_p, p_log)
    significant = dict(zip(emergence["au"].astype(str), log10_p < math.log10(alpha), strict=True))
    in_table = list(significant)
    planted_in = [a for a in in_table if a in set(planted)]
    unplanted = [a for a in in_table if a not in set(planted)]

    def share(names: list[str]) -> float:
        return float(np.mean([significant[a] for a in names])) if names else float("nan")

    best = {
        str(r.au): (str(r.layer), int(r.unit)) for r in emergence.itertuples() if int(r.unit) >= 0
    }
    planted_units = {best[a] for a in planted_in if significant[a] and a in best}
    return {
        "planted": planted_in,
        "planted_missing": [a for a in planted if a not in significant],
        "planted_significant": [a for a in planted_in if significant[a]],
        "planted_share": share(planted_in),
        "unplanted": unplanted,
        "unplanted_significant": [a for a in unplanted if significant[a]],
        "unplanted_share": share(unplanted),
        "unplanted_sharing_planted_unit": [
            a for a in unplanted if significant[a] and best.get(a) in planted_units
        ],
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


def _goal_entry(value: float | None, op: str, target: float) -> dict:
    met = None
    if value is not None and np.isfinite(value):
        met = bool(value >= target) if op == ">=" else bool(value <= target)
    return {"op": op, "value": target, "goal": f"{op} {target:g}", "met": met}


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
) -> dict:
    """The planted.json document from the pieces (``cam``/``gradcam``: the dicts of
    :func:`cam_true_face_overlap`)."""
    hist = detector_precision(detectors, truth["regions"], "histogram_detector")
    nd = detector_precision(detectors, truth["regions"], "netdissect_detector")
    sig = au_significance(emergence, planted_table_aus(truth), alpha)
    regions = truth["regions"]
    chance = float(np.mean([bool(v["carries_signal"]) for v in regions.values()]))
    doc: dict = {
        "cam_true_face_overlap_share": cam["share"],
        "detector_precision": hist["precision"],
        "planted_aus_significant_share": sig["planted_share"],
        "unplanted_aus_significant_share": sig["unplanted_share"],
        "null_false_positive_rate": null_rate(null),
        "null_within_video_false_positive_rate": null_rate(
            null, column="false_positive_rate_within_video"
        ),
        "gradcam_true_face_overlap_share": gradcam["share"],
        "cam_true_face_peak_share": cam["peak_in_face_share"],
        "gradcam_true_face_peak_share": gradcam["peak_in_face_share"],
        "cam_ideal_overlap_share": cam["ideal_share"],
        "detector_precision_netdissect": nd["precision"],
        "detector_precision_chance": chance,
        "n_detectors": hist["n"],
        "n_detectors_netdissect": nd["n"],
        "detectors_by_region": hist["by_region"],
        "detectors_by_region_netdissect": nd["by_region"],
        "cam": cam,
        "gradcam": gradcam,
        "planted_aus": sig["planted"],
        "planted_aus_significant": sig["planted_significant"],
        "unplanted_aus": sig["unplanted"],
        "unplanted_aus_significant": sig["unplanted_significant"],
        "settings": {"threshold": threshold, "min_overlap": min_overlap, "alpha": alpha},
    }
    doc["goals"] = {k: _goal_entry(doc.get(k), op, float(t)) for k, (op, t) in GOALS.items()}
    notes = [
        f"CAM overlap: binarised at {threshold:g} of each map's max, against the true face "
        f"box (bounding box of the 478 true landmarks) mapped into the stored frame; share "
        f"over the {cam['n_scored']} scored of {cam['n_maps']} maps ({cam['n_empty']} empty, "
        f"{cam['n_no_truth']} without a true box)",
        f"the overlap measure's ceiling at this map resolution: a map equal to the true "
        f"box's coverage of each cell reaches overlap >= {min_overlap:g} in "
        f"{cam['ideal_share']:.0%} of the frames (median {cam['ideal_median_overlap']:.2f}); "
        "bilinear upsampling and the 20%-of-max threshold spread any map beyond the box",
        f"detector precision at chance (regions carrying signal / regions): {chance:.2f}",
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
    if sig["planted_missing"]:
        notes.append(
            f"planted AUs {sig['planted_missing']} are not in the emergence table (config aus)"
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
    doc["notes"] = notes
    return doc


def planted_rows(doc: Mapping) -> pd.DataFrame:
    """tables/planted.tsv: check, value, goal, met, note (one row per goal)."""
    note = {
        "cam_true_face_overlap_share": f"{doc['cam']['n_scored']} maps scored; ceiling at "
        f"this resolution {doc['cam']['ideal_share']:.2f} (median overlap "
        f"{doc['cam']['ideal_median_overlap']:.2f} vs {doc['cam']['median_overlap']:.2f})",
        "cam_true_face_peak_share": "the map's peak inside the true face box",
        "gradcam_true_face_peak_share": "the map's peak inside the true face box",
        "gradcam_true_face_overlap_share": f"{doc['gradcam']['n_scored']} maps scored",
        "detector_precision": f"{doc['n_detectors']} detectors; chance "
        f"{doc['detector_precision_chance']:.2f}",
        "detector_precision_netdissect": f"{doc['n_detectors_netdissect']} detectors; chance "
        f"{doc['detector_precision_chance']:.2f}",
        "planted_aus_significant_share": "significant: "
        + (", ".join(doc["planted_aus_significant"]) or "none")
        + f" of {', '.join(doc['planted_aus']) or 'none'}",
        "unplanted_aus_significant_share": "significant: "
        + (", ".join(doc["unplanted_aus_significant"]) or "none"),
        "null_false_positive_rate": f"alpha {doc['settings']['alpha']:g}",
    }
    rows = []
    for check, goal in doc["goals"].items():
        value = doc.get(check)
        rows.append(
            {
                "check": check,
                "value": float("nan") if value is None else value,
                "goal": goal["goal"],
                "met": "" if goal["met"] is None else str(goal["met"]).lower(),
                "note": note.get(check, ""),
            }
        )
    return pd.DataFrame(rows, columns=["check", "value", "goal", "met", "note"])


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


def write_outputs(doc: Mapping, json_path: str | Path, table_path: str | Path) -> None:
    from traitlens.core.atomic import atomic_path, write_text_atomic

    write_text_atomic(json_path, json.dumps(json_ready(doc), indent=2, allow_nan=False) + "\n")
    with atomic_path(table_path) as tmp:
        planted_rows(doc).to_csv(tmp, sep="\t", index=False, na_rep="", float_format="%.4f")
