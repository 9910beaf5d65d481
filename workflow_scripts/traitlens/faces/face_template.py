"""The semantic face template: mean aligned landmarks and region masks on it.

The paper defines eyebrow, eye, nose and mouth regions on the aligned face and scores
each unit by how much of its activation falls inside each. Here every region is a
polygon of mediapipe landmarks (``face_mesh_connections``) placed at the data set's
mean aligned landmarks:

* eyebrows: each brow's lower and upper edge joined into one outline (left + right);
* eyes: each eye's eyelid contour (left + right);
* nose: the convex hull of ``FACEMESH_NOSE``, i.e. the bridge from landmark 168
  (between the eyes) down to the tip and the outline of the alae and nostrils: the
  whole external nose, a triangle on a frontal face;
* mouth: the outer lip contour, filled (lips and the opening between them).

Masks are filled polygons, grown by ``region_dilation_px`` pixels so that a unit
firing at a region's rim still counts, and then made disjoint: a pixel two grown
regions claim goes to the one whose polygon is nearer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from traitlens.core.atomic import atomic_path, save_figure
from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint
from traitlens.faces.face_landmarks import REGIONS, connections, edge_indices, paths, polygon_area
from traitlens.faces.faces_file import AlignedFaces

log = logging.getLogger("traitlens.faces.face_template")

REGION_COLOURS = {
    "eyebrows": "#e6194b",
    "eyes": "#3cb44b",
    "nose": "#ffe119",
    "mouth": "#4363d8",
}

TEMPLATE_SCHEMA = """\
Semantic face template over the aligned faces of a data set (traitlens
build_face_template). Coordinates are aligned-crop pixels, (0, 0) the centre of the
top-left pixel.
  mean_landmarks  float32 (478, 2) mean aligned landmarks over the frames with a face
  mean_face       uint8 (S, S, 3) mean of the aligned RGB crops over those frames
  masks           bool (4, S, S) region masks, in the order of attr region_names
                  (eyebrows, eyes, nose, mouth): landmark polygons at mean_landmarks
                  (eyebrow outlines, eyelid contours, convex hull of FACEMESH_NOSE,
                  outer lip contour), grown by region_dilation_px, made disjoint
Attributes: region_names, aligned_size, region_dilation_px, n_frames, created_by,
schema."""


def region_polygons(landmarks: np.ndarray) -> dict[str, list[np.ndarray]]:
    """{region: [polygon (k, 2), ...]} at ``landmarks`` (478, 2)."""
    import cv2  # not at the top: load_template runs on envs/analysis.yaml, without OpenCV

    c = connections()
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]

    def brow(edges):
        (a, _), (b, _) = paths(edges)  # lower and upper edge, both open
        a, b = pts[list(a)], pts[list(b)]
        join_b = b if np.linalg.norm(a[-1] - b[0]) < np.linalg.norm(a[-1] - b[-1]) else b[::-1]
        return np.concatenate([a, join_b])

    def outer_loop(edges):
        loops = [pts[list(p)] for p, closed in paths(edges) if closed]
        return max(loops, key=lambda poly: abs(polygon_area(poly)))

    nose = pts[list(edge_indices(c.FACEMESH_NOSE))].astype(np.float32)
    return {
        "eyebrows": [brow(c.FACEMESH_RIGHT_EYEBROW), brow(c.FACEMESH_LEFT_EYEBROW)],
        "eyes": [outer_loop(c.FACEMESH_RIGHT_EYE), outer_loop(c.FACEMESH_LEFT_EYE)],
        "nose": [cv2.convexHull(nose)[:, 0, :].astype(np.float64)],
        "mouth": [outer_loop(c.FACEMESH_LIPS)],
    }


def _fill(polygons: Sequence[np.ndarray], size: int) -> np.ndarray:
    import cv2

    mask = np.zeros((size, size), np.uint8)
    shift = 4  # sub-pixel vertices
    pts = [np.round(p * (1 << shift)).astype(np.int32) for p in polygons]
    cv2.fillPoly(mask, pts, 1, cv2.LINE_8, shift)
    return mask


def region_masks(landmarks: np.ndarray, size: int, dilation_px: int = 0) -> np.ndarray:
    """(4, size, size) bool masks in REGIONS order, grown and made disjoint."""
    polys = region_polygons(landmarks)
    cores = np.stack([_fill(polys[name], size) for name in REGIONS])
    if dilation_px <= 0:
        return cores.astype(bool)
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation_px + 1,) * 2)
    grown = np.stack([cv2.dilate(m, kernel) for m in cores]).astype(bool)
    # distance of every pixel to each region's polygon: contested pixels go to the nearest
    dist = np.stack([cv2.distanceTransform(1 - m, cv2.DIST_L2, 5) for m in cores])
    nearest = np.argmin(np.where(grown, dist, np.inf), axis=0)
    owner = np.arange(len(REGIONS))[:, None, None] == nearest[None]
    return grown & owner


def mean_aligned_face(
    faces_paths: Sequence[str | Path], batch: int = 256
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(mean aligned landmarks (478, 2), mean aligned crop (S, S, 3) float, n frames, S)
    over the successful frames of the given faces files, read in batches."""
    sum_lm, sum_img, n, size = None, None, 0, None
    for path in map(Path, faces_paths):
        with AlignedFaces(path) as faces:
            s = faces.size
            if size is not None and s != size:
                raise UserError(
                    f"{path}: aligned crops are {s} px, other shards' are {size} px; rerun "
                    "detect_faces for every shard with the same faces.aligned_size"
                )
            size = s
            if sum_lm is None:
                sum_lm, sum_img = np.zeros((478, 2)), np.zeros((s, s, 3))
            for landmarks, crops in faces.successful(batch):
                sum_lm += landmarks.sum(axis=0, dtype=np.float64)
                sum_img += crops.sum(axis=0, dtype=np.float64)
                n += len(crops)
    if not n:
        raise UserError(
            f"no face was found in any frame of {len(faces_paths)} faces file(s); see "
            "qc/faces/*.tsv (reasons per video) and the face detection settings faces.*"
        )
    return sum_lm / n, sum_img / n, n, size


def build_face_template(
    faces_paths: Sequence[str | Path],
    template_out: str | Path,
    figure_out: str | Path,
    dilation_px: int,
) -> dict[str, int]:
    """Write template.h5 and the face-regions figure; returns pixels per region."""
    mean_lm, mean_img, n, size = mean_aligned_face(faces_paths)
    masks = region_masks(mean_lm, size, dilation_px)
    mean_face = np.clip(np.round(mean_img), 0, 255).astype(np.uint8)
    with atomic_path(template_out) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.attrs.update(
            schema=TEMPLATE_SCHEMA,
            region_names=list(REGIONS),
            aligned_size=size,
            region_dilation_px=dilation_px,
            n_frames=n,
            created_by="traitlens.faces.face_template",
        )
        f.create_dataset("mean_landmarks", data=mean_lm.astype(np.float32), track_times=False)
        f.create_dataset("mean_face", data=mean_face, track_times=False)
        f.create_dataset("masks", data=masks, track_times=False)
    plot_regions(mean_face, masks, mean_lm, figure_out, n)
    areas = {name: int(m.sum()) for name, m in zip(REGIONS, masks, strict=True)}
    log.info("face template from %d frames, %d px; region pixels %s", n, size, areas)
    return areas


class FaceTemplate(NamedTuple):
    mean_landmarks: np.ndarray  # (478, 2) aligned pixels
    mean_face: np.ndarray  # uint8 (S, S, 3)
    masks: np.ndarray  # bool (R, S, S)
    region_names: list[str]


def load_template(path: str | Path) -> FaceTemplate:
    """A template.h5, checked: UserError naming the file and the rule that rebuilds it."""
    with open_checked(
        path, "face template", "build_face_template", ["mean_landmarks", "mean_face", "masks"]
    ) as f:
        names = [as_str(n) for n in f.attrs.get("region_names", [])]
        template = FaceTemplate(
            f["mean_landmarks"][:], f["mean_face"][:], f["masks"][:].astype(bool), names
        )
    if len(names) != len(template.masks):
        raise UserError(
            f"{path}: {len(template.masks)} region masks but region_names lists {names}; "
            f"{rebuild_hint(path, 'build_face_template')}"
        )
    return template


def plot_regions(
    mean_face: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, out: str | Path, n: int
) -> None:
    """The mean aligned face with the coloured regions and a legend (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    size = mean_face.shape[0]
    overlay = mean_face.astype(np.float64) / 255.0
    for name, mask in zip(REGIONS, masks, strict=True):
        overlay[mask] = 0.55 * overlay[mask] + 0.45 * np.array(to_rgb(REGION_COLOURS[name]))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4), dpi=150)
    axes[0].imshow(mean_face, interpolation="lanczos")
    axes[0].scatter(*np.asarray(landmarks)[:, :2].T, s=0.6, c="white", alpha=0.6, linewidths=0)
    axes[0].set_title("mean aligned face + mean landmarks", fontsize=9)
    axes[1].imshow(overlay, interpolation="nearest")
    for name, mask in zip(REGIONS, masks, strict=True):
        axes[1].contour(mask, levels=[0.5], colors=[REGION_COLOURS[name]], linewidths=0.8)
    axes[1].set_title("semantic regions", fontsize=9)
    for ax in axes:
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=REGION_COLOURS[name], label=name) for name in REGIONS]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.suptitle(f"Face template: {n} aligned frames, {size} x {size} px", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    save_figure(fig, out)
