"""Action Unit intensities per frame: columns, the AU45 mapping, tables and shard IO.

Columns of ``aus/<shard>.tsv`` (one row per frame of the faces file, in its order):
``video_id, frame_index, success``, the provenance :data:`PROVENANCE_COLUMNS`, then
:data:`AU_COLUMNS`: py-feat's 20 AUs (:data:`PYFEAT_AUS`) and AU45. Frames without a
face have ``success`` false and empty AU cells. ``aus/<shard>.videos.tsv``: per video
``video_id, n_frames`` (successful frames used), the provenance, and the mean of every
AU column over them (empty when none).

The provenance says what the numbers are, since the backends differ in kind (see
:func:`provenance`): ``au_backend`` (mesh, detector), ``au_scale`` (intensity: the
weight of each AU's mesh displacement; probability: the network's belief that the AU
is present) and ``au_baseline`` (none, or ``video_p<percentile>`` /
``person_p<percentile>`` when each video's / person's low percentile was subtracted).
Readers pick AU columns by name, so tables written before these columns existed still
read.

The 17-AU OpenFace 2.0 view of docs/method.md (:data:`OPENFACE_17`) is a subset of the
columns. py-feat has no AU45 (blink) but has AU43 (eyes closed); OpenFace's AU45
intensity measures the same thing in one frame, how far the upper lid has come down,
so ``AU45 := AU43`` (:func:`derive_au45`); a backend that predicts AU45 itself (py-feat's
24-AU multitask checkpoints) keeps its own value.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from traitlens.core import atomic
from traitlens.core.config import from_section
from traitlens.core.errors import UserError
from traitlens.core.tables import read_table
from traitlens.faces.faces_file import FaceRows, read_faces

log = logging.getLogger("traitlens.aus.estimate_aus")

PYFEAT_AUS = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43",
)  # fmt: skip
AU_COLUMNS = (*PYFEAT_AUS, "AU45")
OPENFACE_17 = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45",
)  # fmt: skip
KEY_COLUMNS = ("video_id", "frame_index", "success")
FRAME_COLUMNS = (*KEY_COLUMNS, *AU_COLUMNS)
VIDEO_COLUMNS = ("video_id", "n_frames", *AU_COLUMNS)
PROVENANCE_COLUMNS = ("au_backend", "au_scale", "au_baseline")
BACKENDS = ("mesh", "detector")
# What each backend's numbers are: the mesh solve's AU weights, the network's sigmoid
SCALES = {"mesh": "intensity", "detector": "probability"}
BASELINES = ("none", "video", "person")
FLOAT_FORMAT = "%.4f"


def derive_au45(au43: np.ndarray) -> np.ndarray:
    """OpenFace AU45 (blink) from py-feat AU43 (eyes closed): the same lid closure."""
    return np.array(au43, dtype=np.float64, copy=True)


def with_au45(values: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    """(n, 20) py-feat AUs in ``columns`` order -> (n, 21) in :data:`AU_COLUMNS` order."""
    values = np.asarray(values, dtype=np.float64)
    order = [list(columns).index(c) for c in PYFEAT_AUS]
    ordered = values[:, order]
    return np.column_stack([ordered, derive_au45(ordered[:, PYFEAT_AUS.index("AU43")])])


def subtract_baseline(values: np.ndarray, groups: np.ndarray, percentile: float) -> np.ndarray:
    """Per group of rows and AU, subtract the ``percentile`` of the group's values; clip at 0.

    The person-specific normalisation OpenFace applies: a person's neutral face (its
    shape, mediapipe's reading of it) shows up as a constant AU offset, and the low
    percentile of the person's frames estimates it. ``groups`` labels each row: its video
    (config ``aus.baseline: video``, applied per shard) or its person (``person``, applied
    over every shard by :mod:`traitlens.aus.person_baseline`). NaN rows (no face) are
    ignored and stay NaN.

    ``video`` also removes each video's own AU level, which in the demo carries the trait
    signal: every planted AU's r fell (AU01 0.62 -> 0.49, AU12 0.73 -> 0.60 at the 5th
    percentile). ``person`` keeps it, since a person's clips differ in their levels, and
    removes the per-face offset that costs AU01 its r across people (docs/validation.md).
    """
    out = np.array(values, dtype=np.float64, copy=True)
    for g in pd.unique(np.asarray(groups)):
        rows = groups == g
        block = out[rows]
        if np.isfinite(block).any():
            base = np.nanpercentile(block, percentile, axis=0)
            out[rows] = np.clip(block - np.nan_to_num(base), 0.0, None)
    return out


# --- config ---------------------------------------------------------------------------


def _mesh_defaults() -> dict:
    from traitlens.aus.mesh_backend import MeshParams  # numpy only, but not needed to import

    return asdict(MeshParams())


@dataclass(frozen=True)
class AuConfig:
    """Config ``aus`` (the schema documents every key)."""

    backend: str = "mesh"
    baseline: str = "none"
    baseline_percentile: float = 5.0
    mesh: Mapping = field(default_factory=lambda: _mesh_defaults())  # aus.mesh
    detector_weights_dir: str | None = None
    detector_batch: int = 32
    detector_device: str = "cpu"

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> AuConfig:
        """From the validated ``aus:`` section."""
        return from_section(cls, cfg, "aus")


# --- tables ---------------------------------------------------------------------------


def frame_table(rows: FaceRows, values: np.ndarray) -> pd.DataFrame:
    """The per-frame table: keys + :data:`AU_COLUMNS` (NaN where no face)."""
    values = np.asarray(values, dtype=np.float64)
    ok = rows.success & np.isfinite(values).all(axis=1)
    values = np.where(ok[:, None], values, np.nan)
    table = pd.DataFrame(values, columns=list(AU_COLUMNS))
    table.insert(0, "success", ok)
    table.insert(0, "frame_index", rows.frame_index)
    table.insert(0, "video_id", rows.row_video_ids())
    return table


def video_means(frames: pd.DataFrame, video_ids: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Per video: n_frames (successful frames) and each AU's mean over them.

    ``video_ids`` lists every video of the shard, so one with no usable frame still
    gets a row (n_frames 0, AU cells empty).
    """
    ids = list(video_ids) if video_ids is not None else list(dict.fromkeys(frames["video_id"]))
    used = frames[frames["success"]]
    means = used.groupby("video_id", sort=False)[list(AU_COLUMNS)].mean()
    counts = used.groupby("video_id", sort=False).size()
    out = means.reindex(ids)
    out.insert(0, "n_frames", counts.reindex(ids).fillna(0).astype(int))
    return out.rename_axis("video_id").reset_index()


def baseline_label(baseline: str, percentile: float) -> str:
    """The ``au_baseline`` provenance value: ``none``, or the unit and percentile
    subtracted (``video_p5``, ``person_p5``)."""
    return "none" if baseline == "none" else f"{baseline}_p{percentile:g}"


def provenance(cfg: AuConfig) -> dict[str, str]:
    """The :data:`PROVENANCE_COLUMNS` values of tables made with ``cfg``."""
    baseline = baseline_label(cfg.baseline, cfg.baseline_percentile)
    return {"au_backend": cfg.backend, "au_scale": SCALES[cfg.backend], "au_baseline": baseline}


def with_provenance(table: pd.DataFrame, values: Mapping[str, str], after: str) -> pd.DataFrame:
    """``table`` with the provenance columns inserted after column ``after``."""
    out = table.copy()
    at = out.columns.get_loc(after) + 1
    for offset, (name, value) in enumerate(values.items()):
        out.insert(at + offset, name, value)
    return out


def write_tsv(table: pd.DataFrame, path: str | Path) -> None:
    """TSV with 4 decimals, empty cells for NaN, booleans as true/false; atomic."""
    atomic.write_tsv(table, path, FLOAT_FORMAT)


def read_frame_table(path: str | Path) -> pd.DataFrame:
    """Read an aus/<shard>.tsv written by :func:`write_tsv`."""
    table = read_table(
        path, "AU frame", "estimate_aus", FRAME_COLUMNS, dtype={"video_id": str, "success": str}
    )
    table["success"] = table["success"].str.lower().eq("true")
    return table


def read_video_table(path: str | Path) -> pd.DataFrame:
    """Read an aus/<shard>.videos.tsv written by :func:`write_tsv`."""
    return read_table(path, "AU video", "estimate_aus", VIDEO_COLUMNS, dtype={"video_id": str})


# --- one shard ------------------------------------------------------------------------


def estimate_values(rows: FaceRows, cfg: AuConfig, frames_path: str | Path | None) -> np.ndarray:
    """(n, 21) AU values in :data:`AU_COLUMNS` order for every row (NaN where no face)."""
    if cfg.backend == "mesh":
        from traitlens.aus.mesh_backend import MeshAuSolver, MeshParams

        solver = MeshAuSolver(MeshParams.from_mapping(cfg.mesh))
        lm = np.where(rows.success[:, None, None], rows.landmarks, np.nan)
        return with_au45(solver.estimate(lm), solver.au_columns)
    from traitlens.aus.detector_backend import estimate_with_detector

    if frames_path is None:
        raise UserError("aus.backend detector needs the frames file of the shard as input")
    return estimate_with_detector(rows, frames_path, cfg)


def estimate_shard(
    faces_path: str | Path, cfg: AuConfig, frames_path: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frame table and the per-video table of one shard."""
    if cfg.baseline == "person":  # a person's clips lie in several shards
        raise ValueError("the person baseline is applied over all shards (calibrate_aus)")
    rows = read_faces(faces_path)
    values = estimate_values(rows, cfg, frames_path)
    if cfg.baseline == "video":
        values = subtract_baseline(values, rows.video_index, cfg.baseline_percentile)
    frames = frame_table(rows, values)
    videos = video_means(frames, rows.video_ids)
    made_with = provenance(cfg)
    frames = with_provenance(frames, made_with, after="success")
    videos = with_provenance(videos, made_with, after="n_frames")
    log.info(
        "%s: %d frames (%d with a face), %d videos, backend %s (%s), baseline %s",
        faces_path,
        len(frames),
        int(frames["success"].sum()),
        len(videos),
        cfg.backend,
        made_with["au_scale"],
        made_with["au_baseline"],
    )
    return frames, videos
