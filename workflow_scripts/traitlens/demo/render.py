"""Render one demo video's frames: planted AUs -> mesh -> warp, plus nuisance.

Per frame: the planted AU vector gives a model-frame mesh displacement (py-feat
AU->mesh); the inverse of the similarity that aligns the identity's rest landmarks to
``mean_aligned_mesh`` carries it into canvas pixels; a piecewise-affine warp moves the
identity's face accordingly; the head is placed in the frame with smooth translation,
roll and scale jitter; the mouth opening is painted dark and a closing eye gets lid
skin and a lash line (the warp alone would squash the eyeball, not cover it); a side
light, a global gain/gamma drift and a slowly changing background finish the frame.
Only the AUs carry trait signal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from traitlens.demo import au_mesh, regions, warp
from traitlens.demo.identities import Identity
from traitlens.demo.plan import DemoConfig
from traitlens.demo.signal import VideoSignal

CONTROL_MIN_DIST = 5.0  # model units between warp control points (thin slivers fold)
MOUTH_RGB = np.array([52.0, 22.0, 26.0], np.float32)
LASH_RGB = np.array([40.0, 28.0, 25.0], np.float32)


def _blend_polygon(
    img: np.ndarray, poly: np.ndarray, colour, opacity: float, rim: bool = False
) -> None:
    """Blend ``colour`` into float image ``img`` inside ``poly`` (anti-aliased), in place.

    ``rim`` also covers a 1-px band around the polygon (for slivers thinner than a pixel).
    """
    h, w = img.shape[:2]
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 2, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round((poly - [x0, y0]) * 16).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA, shift=4)
    if rim:
        cv2.polylines(mask, [pts], True, 255, 1, cv2.LINE_AA, shift=4)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.7)
    a = (mask.astype(np.float32) / 255.0)[..., None] * opacity
    patch = img[y0:y1, x0:x1, :3]
    patch += a * (np.asarray(colour, np.float32) - patch)


def _draw_line(img: np.ndarray, pts: np.ndarray, colour, opacity: float) -> None:
    """Blend an anti-aliased 1-px polyline into float image ``img``, in place."""
    h, w = img.shape[:2]
    x0, y0 = np.maximum(np.floor(pts.min(axis=0)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(pts.max(axis=0)).astype(int) + 3, [w, h])
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    p = np.round((pts - [x0, y0]) * 16).astype(np.int32)
    cv2.polylines(mask, [p], False, 255, 1, cv2.LINE_AA, shift=4)
    a = (mask.astype(np.float32) / 255.0)[..., None] * opacity
    patch = img[y0:y1, x0:x1, :3]
    patch += a * (np.asarray(colour, np.float32) - patch)


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (478, 2) true landmark positions in frame pixels

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Face box: bounding box of the 478 landmarks (what mediapipe's mesh spans)."""
        return _landmark_box(self.landmarks)

    def region_box(self, region: str) -> tuple[float, float, float, float]:
        """Bounding box of one region's landmarks (eyebrows, eyes, nose, mouth) here."""
        return _landmark_box(self.landmarks[list(regions.region_landmarks()[region])])


def _landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def control_indices(rest: np.ndarray, min_dist: float) -> np.ndarray:
    """Mesh landmarks that drive the warp: greedy thinning to ``min_dist`` apart.

    Feature contours (inner lips, lips, eyes, brows, face oval, nose) are kept first;
    dense interior points closer than ``min_dist`` to a kept one are dropped. They then
    move with the piecewise-affine field, which stays close to the model's motion.
    """
    rl = regions.region_landmarks()
    first = [*regions.INNER_LIPS, *rl["mouth"], *rl["eyes"], *rl["eyebrows"]]
    first += [*regions.face_oval(), *rl["nose"]]
    seen: set[int] = set()
    order = [i for i in [*first, *range(au_mesh.N_MESH)] if not (i in seen or seen.add(i))]
    kept: list[int] = []
    for i in order:
        if not kept or np.min(np.hypot(*(rest[kept] - rest[i]).T)) >= min_dist:
            kept.append(i)
    return np.array(sorted(kept))


def _background(cfg: DemoConfig, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Two textured backgrounds (float32 RGB 0..255) the clip drifts between."""
    rng = np.random.default_rng(seed)
    h, w = cfg.height, cfg.width
    hue = rng.uniform(0, 180)
    sat = rng.uniform(25, 130)
    val = rng.uniform(90, 220)
    base = cv2.cvtColor(np.uint8([[[hue, sat, val]]]), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    rows = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    vertical = 1.0 + rng.uniform(-0.15, 0.15) * rows  # light from above or below

    tint = rng.uniform(0.9, 1.1, 3).astype(np.float32)

    def texture():
        # mostly brightness texture (a wall, a room out of focus), a little colour
        coarse = cv2.resize(
            rng.normal(0, 1, (4, 7)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )[..., None]
        fine = cv2.resize(
            rng.normal(0, 1, (12, 21)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )[..., None]
        chroma = cv2.resize(
            rng.normal(0, 1, (3, 5, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        )
        tex = base * tint * vertical * (1.0 + 0.2 * coarse + 0.06 * fine + 0.05 * chroma)
        return np.clip(tex, 0, 255).astype(np.float32)

    return texture(), texture(), {"bg_hue": hue * 2, "bg_sat": sat / 255, "bg_val": val / 255}


class VideoRenderer:
    """Frames of one video: an identity animated by a :class:`VideoSignal`."""

    def __init__(self, identity: Identity, sig: VideoSignal, cfg: DemoConfig):
        self.cfg = cfg
        self.sig = sig
        nu = sig.nuisance
        model = au_mesh.load_model()
        # scale the canvas once so the face has this clip's size (frame jitter is small)
        scale = nu.face_height * cfg.height / identity.face_size[1]
        h0, w0 = identity.rgba.shape[:2]
        w1, h1 = max(8, int(round(w0 * scale))), max(8, int(round(h0 * scale)))
        self.canvas = cv2.resize(identity.rgba, (w1, h1), interpolation=cv2.INTER_AREA)
        sxy = np.array([w1 / w0, h1 / h0])
        self.rest = (identity.landmarks + 0.5) * sxy - 0.5
        lo, hi = self.rest[: au_mesh.N_MESH].min(axis=0), self.rest[: au_mesh.N_MESH].max(axis=0)
        self.center, self.size = (lo + hi) / 2, hi - lo
        self.to_model = au_mesh.align_image_to_model(self.rest, model)
        self.ctrl = control_indices(self.rest, CONTROL_MIN_DIST / self.to_model.scale)
        ring = warp.ellipse_anchors(self.center, self.size * 0.5 * 1.4, 28)
        points = np.concatenate([self.rest[self.ctrl], ring, warp.border_anchors(w1, h1, 2, 1.0)])
        rlo, rhi = ring.min(axis=0) - 2, ring.max(axis=0) + 2
        self.field = warp.ForwardField(points, (h1, w1), (*rlo, *rhi))
        # where every landmark sits in the control triangulation (realised positions)
        self._lm_vert, self._lm_bary = self.field.point_weights(self.rest)
        self.n_ctrl_points = len(points)
        self.au_matrix = np.zeros((cfg.n_frames, len(model.au_columns)))
        for name, traj in sig.au.items():
            self.au_matrix[:, model.au_columns.index(name)] = traj
        self._model = model
        self.bg_a, self.bg_b, self.background_params = _background(cfg, nu.bg_seed)
        self._columns = np.arange(cfg.width, dtype=np.float32)

    def placement(self, t: int) -> np.ndarray:
        """2x3 affine: scaled canvas pixels -> frame pixels at frame ``t``."""
        nu, cfg = self.sig.nuisance, self.cfg
        ang = np.radians(nu.roll_deg[t])
        rot = nu.scale[t] * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        fw = self.size[0]
        target = np.array(
            [nu.center[0] * cfg.width + nu.dx[t] * fw, nu.center[1] * cfg.height + nu.dy[t] * fw]
        )
        return np.hstack([rot, (target - rot @ self.center)[:, None]])

    def landmarks_at(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(control-point displacements in canvas px, realised landmarks in canvas px)."""
        delta = self._model.delta_xy(self.au_matrix[t])
        disp = au_mesh.model_delta_to_image(delta, self.to_model)
        ctrl_disp = np.zeros((self.n_ctrl_points, 2))
        ctrl_disp[: len(self.ctrl)] = disp[self.ctrl]
        realised = self.rest + np.einsum("nk,nkd->nd", self._lm_bary, ctrl_disp[self._lm_vert])
        return ctrl_disp[: len(self.ctrl)], realised

    def frames(self) -> Iterator[Frame]:
        for t in range(self.cfg.n_frames):
            yield self.render(t)

    def render(self, t: int) -> Frame:
        cfg, nu = self.cfg, self.sig.nuisance
        ctrl_disp, realised = self.landmarks_at(t)
        affine = self.placement(t)
        inv = cv2.invertAffineTransform(affine)
        map_x, map_y = self.field.inverse_maps(ctrl_disp, inv, (cfg.height, cfg.width))
        fg = cv2.remap(self.canvas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        lms = realised @ affine[:, :2].T + affine[:, 2]
        fg = fg.astype(np.float32)
        self._paint_mouth(fg, lms[list(regions.INNER_LIPS)])
        self._paint_eyelids(fg, lms, realised, float(np.sqrt(abs(np.linalg.det(affine[:, :2])))))
        alpha = fg[..., 3:] / 255.0
        side = 1.0 + nu.side[t] * (self._columns - lms[:, 0].mean()) / (self.size[0] * 1.5)
        person = fg[..., :3] * np.clip(side, 0.6, 1.4)[None, :, None]
        bg = self.bg_a + nu.bg_mix[t] * (self.bg_b - self.bg_a)
        out = bg + alpha * (person - bg)
        out = np.clip(out, 0, 255).astype(np.uint8)
        lut = np.clip(255.0 * nu.gain[t] * (np.arange(256) / 255.0) ** nu.gamma[t], 0, 255)
        out = cv2.LUT(out, lut.astype(np.uint8))
        return Frame(out, lms)

    def _paint_eyelids(
        self, fg: np.ndarray, lms: np.ndarray, realised: np.ndarray, scale: float
    ) -> None:
        """Cover a closing eye with lid skin and draw the lash line, in place.

        The warp alone squashes the whole eyeball into the narrowing opening (a bright
        sliver); a real lid slides over it. Opacity follows the closure (1 - gap / rest
        gap): none for an open eye, nearly full as the lids meet.
        """
        h, w = fg.shape[:2]
        for eye in regions.EYES.values():
            up, low = eye["lids"]
            rest_gap = self.rest[low, 1] - self.rest[up, 1]
            closure = 1.0 - (realised[low, 1] - realised[up, 1]) / max(rest_gap, 1e-6)
            opacity = float(np.clip((closure - 0.15) / 0.55, 0.0, 1.0))
            if opacity <= 0.0:
                continue
            # the band the lid slid over: from the upper lid up by the distance it moved
            down = lms[low] - lms[up]
            down = down / max(np.hypot(*down), 1e-6)
            upper = lms[list(eye["upper"])]
            travel = down * closure * rest_gap * scale
            band = np.concatenate([upper - travel, lms[list(eye["opening"])][::-1]])
            # lid skin colour: above the band
            probe = lms[up] - travel - down * max(rest_gap * scale, 2.0)
            px, py = int(np.clip(probe[0], 1, w - 2)), int(np.clip(probe[1], 1, h - 2))
            patch = fg[max(py - 1, 0) : py + 2, max(px - 3, 0) : px + 4, :3]
            skin = np.median(patch.reshape(-1, 3), axis=0)
            _blend_polygon(fg, band, skin * 0.92, opacity, rim=True)
            _draw_line(fg, upper, LASH_RGB, 0.8 * opacity)

    @staticmethod
    def _paint_mouth(fg: np.ndarray, poly: np.ndarray) -> None:
        """Fill the mouth opening (inner lip polygon) dark, anti-aliased, in place."""
        if abs(regions.polygon_area(poly)) >= 1.0:
            _blend_polygon(fg, poly, MOUTH_RGB, 0.92)
