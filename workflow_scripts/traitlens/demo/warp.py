"""Piecewise-affine image warps driven by landmarks, vectorised (no per-triangle loops).

Two tools:

* :func:`inverse_map_exact` builds the exact piecewise-affine inverse map for one warp:
  Delaunay triangulation of the destination points, every output pixel located in its
  triangle and mapped with barycentric coordinates to the same triangle in the source.
  Used once per identity (base photo -> template shape), where landmarks move a lot.

* :class:`ForwardField` serves the per-frame warps, where landmarks move a few pixels
  around a fixed rest shape. The triangulation and every source pixel's barycentric
  coordinates (and their gradients) are computed once; a frame then costs one gather
  (the forward displacement u and its Jacobian) and a few Newton steps on
  ``s + u(s) = x`` for the output pixels that land in the deforming region. The
  piecewise-affine map is a homeomorphism while no triangle flips, so the solution is
  its exact inverse (to bilinear sampling of u between pixel centres).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay


def border_anchors(width: float, height: float, per_side: int = 4, margin: float = 0.0):
    """Points along the rectangle [-margin, width+margin] x [-margin, height+margin]."""
    xs = np.linspace(-margin, width + margin, per_side + 1)
    ys = np.linspace(-margin, height + margin, per_side + 1)
    top = np.stack([xs, np.full_like(xs, -margin)], axis=1)
    bottom = np.stack([xs, np.full_like(xs, height + margin)], axis=1)
    left = np.stack([np.full_like(ys[1:-1], -margin), ys[1:-1]], axis=1)
    right = np.stack([np.full_like(ys[1:-1], width + margin), ys[1:-1]], axis=1)
    return np.concatenate([top, bottom, left, right])


def ellipse_anchors(center, radii, n: int = 24) -> np.ndarray:
    """``n`` points on an axis-aligned ellipse: a fixed ring that confines a local warp."""
    ang = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack(
        [center[0] + radii[0] * np.cos(ang), center[1] + radii[1] * np.sin(ang)], axis=1
    )


def _barycentric(tri: Delaunay, simplex: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (n, 3) of ``pts`` in their (valid) simplices."""
    trans = tri.transform[simplex]  # (n, 3, 2): inverse affine + origin vertex
    b = np.einsum("nij,nj->ni", trans[:, :2], pts - trans[:, 2])
    return np.concatenate([b, 1.0 - b.sum(axis=1, keepdims=True)], axis=1)


def inverse_map_exact(
    src_pts: np.ndarray, dst_pts: np.ndarray, out_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact piecewise-affine inverse map (map_x, map_y) for ``cv2.remap``.

    ``dst_pts`` are triangulated (Delaunay); output pixels outside their hull map to
    -1 (the remap border). Include anchor points (e.g. :func:`border_anchors`) in both
    point sets to cover the whole output.
    """
    h, w = out_shape
    tri = Delaunay(np.asarray(dst_pts, dtype=np.float64))
    yy, xx = np.mgrid[0:h, 0:w]
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
    simplex = tri.find_simplex(grid)
    inside = simplex >= 0
    bary = _barycentric(tri, simplex[inside], grid[inside])
    src = np.asarray(src_pts, dtype=np.float64)[tri.simplices[simplex[inside]]]  # (n,3,2)
    mapped = np.full((h * w, 2), -1.0)
    mapped[inside] = np.einsum("nk,nkd->nd", bary, src)
    mapped = mapped.reshape(h, w, 2).astype(np.float32)
    return mapped[..., 0].copy(), mapped[..., 1].copy()


def warp_exact(
    image: np.ndarray,
    src_pts: np.ndarray,
    dst_pts: np.ndarray,
    out_shape: tuple[int, int],
    border_value=0,
) -> np.ndarray:
    """Warp ``image`` so that ``src_pts`` land on ``dst_pts`` (exact piecewise affine)."""
    map_x, map_y = inverse_map_exact(src_pts, dst_pts, out_shape)
    return cv2.remap(
        image,
        map_x,
        map_y,
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


class ForwardField:
    """Per-frame small warps of one source image around fixed rest landmarks.

    ``points`` are the rest positions of every control point in source pixels (moving
    landmarks first, then fixed anchors); only pixels inside ``region`` (x0, y0, x1,
    y1), which must contain every triangle that touches a moving point, get a
    displacement. The triangulation is Delaunay on the rest points.
    """

    def __init__(self, points: np.ndarray, source_shape: tuple[int, int], region):
        self.points = np.asarray(points, dtype=np.float64)
        self.source_shape = tuple(source_shape)
        tri = Delaunay(self.points)
        self._tri = tri
        self.simplices = tri.simplices
        x0, y0, x1, y1 = (int(round(v)) for v in region)
        h, w = self.source_shape
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        self.region = (x0, y0, x1, y1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64)
        simplex = tri.find_simplex(grid)
        simplex = np.where(simplex < 0, 0, simplex)  # outside the hull: never happens
        # per-triangle barycentric transforms: u is affine in each triangle, so a frame
        # needs the triangles' affine maps and one gather per pixel
        self._simplex = simplex
        self._tri_t = tri.transform[:, :2].astype(np.float64)  # (n_tri, 2, 2)
        self._tri_r = tri.transform[:, 2].astype(np.float64)  # (n_tri, 2): last vertex
        self._gx = grid[:, 0].astype(np.float32)
        self._gy = grid[:, 1].astype(np.float32)
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _full(self, disp: np.ndarray) -> np.ndarray:
        full = np.zeros((len(self.points), 2), dtype=np.float32)
        full[: len(disp)] = disp
        return full

    def point_weights(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vertex indices, barycentric weights), each (n, 3), of points at rest."""
        pts = np.asarray(pts, dtype=np.float64)
        simplex = self._tri.find_simplex(pts)
        if (simplex < 0).any():
            raise ValueError("point outside the warp's triangulation")
        return self.simplices[simplex], _barycentric(self._tri, simplex, pts)

    def displacement_field(self, disp: np.ndarray) -> np.ndarray:
        """Forward displacement u (H, W, 2) float32 for per-point displacements ``disp``.

        ``disp`` has one row per control point (anchors: zeros) or per moving point
        (then the anchors are taken as fixed).
        """
        x0, y0, x1, y1 = self.region
        field = np.zeros((*self.source_shape, 2), dtype=np.float32)
        field[y0:y1, x0:x1] = self._fields(disp)[..., :2]
        return field

    def _fields(self, disp: np.ndarray) -> np.ndarray:
        """u and its Jacobian over the region: (h_r, w_r, 6) = u_x, u_y, du/dx, du/dy."""
        d = self._full(disp).astype(np.float64)[self.simplices]  # (n_tri, 3, 2)
        # u = d2 + [d0 - d2, d1 - d2] @ T @ (p - r): Jacobian J = D T, offset c = d2 - J r
        dmat = np.stack([d[:, 0] - d[:, 2], d[:, 1] - d[:, 2]], axis=2)  # (n_tri, 2, 2)
        jac = np.einsum("tij,tjk->tik", dmat, self._tri_t)
        off = d[:, 2] - np.einsum("tij,tj->ti", jac, self._tri_r)
        per_tri = np.concatenate([off, jac.reshape(-1, 4)], axis=1).astype(np.float32)
        px = per_tri[self._simplex]  # (n_px, 6): c_x, c_y, J00, J01, J10, J11
        ux = px[:, 0] + px[:, 2] * self._gx + px[:, 3] * self._gy
        uy = px[:, 1] + px[:, 4] * self._gx + px[:, 5] * self._gy
        x0, y0, x1, y1 = self.region
        out = np.concatenate([ux[:, None], uy[:, None], px[:, 2:]], axis=1)
        return out.reshape(y1 - y0, x1 - x0, 6)

    def _out_grid(self, out_shape):
        if out_shape not in self._grids:
            yy, xx = np.mgrid[0 : out_shape[0], 0 : out_shape[1]].astype(np.float32)
            self._grids[out_shape] = (xx, yy)
        return self._grids[out_shape]

    def inverse_maps(
        self,
        disp: np.ndarray,
        out_to_source: np.ndarray,
        out_shape: tuple[int, int],
        n_iter: int = 3,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Maps for ``cv2.remap``: output pixel -> source pixel.

        The output is the source, deformed by ``disp`` (forward, in source pixels) and
        then placed by an affine map whose inverse is ``out_to_source`` (2x3).

        Only output pixels that land in the deforming region are iterated: Newton steps
        on ``s + u(s) = x`` with u's Jacobian, so strongly compressed triangles (an eye
        closing) converge as fast as mild ones, where the plain fixed point would crawl.
        """
        xx, yy = self._out_grid(tuple(out_shape))
        a = np.asarray(out_to_source, dtype=np.float32)
        bx = a[0, 0] * xx + a[0, 1] * yy + a[0, 2]
        by = a[1, 0] * xx + a[1, 1] * yy + a[1, 2]
        x0, y0, x1, y1 = self.region
        hit = (bx >= x0 - 1) & (bx <= x1) & (by >= y0 - 1) & (by <= y1)
        if not hit.any():
            return bx, by
        fields = self._fields(disp)
        tx, ty = bx[hit] - x0, by[hit] - y0  # targets, in region coordinates
        sx, sy = tx.copy(), ty.copy()
        n = len(tx)
        cols = min(n, 4096)  # remap wants maps under 32767 columns: fold into rows
        rows = -(-n // cols)
        pad = rows * cols - n
        for _ in range(n_iter):
            f = cv2.remap(
                fields,
                np.pad(sx, (0, pad)).reshape(rows, cols),
                np.pad(sy, (0, pad)).reshape(rows, cols),
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            ).reshape(-1, 6)[:n]
            rx = sx + f[:, 0] - tx
            ry = sy + f[:, 1] - ty
            m00, m01, m10, m11 = 1 + f[:, 2], f[:, 3], f[:, 4], 1 + f[:, 5]
            det = m00 * m11 - m01 * m10
            det = np.where(np.abs(det) < 1e-3, 1e-3, det)  # folded: never when planted
            sx = sx - (m11 * rx - m01 * ry) / det
            sy = sy - (m00 * ry - m10 * rx) / det
        bx = bx.copy()
        by = by.copy()
        bx[hit] = sx + x0
        by[hit] = sy + y0
        return bx, by
