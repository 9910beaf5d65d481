"""Piecewise-affine warps: exact inverse map, per-frame forward field, landmark accuracy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial import Delaunay

from traitlens.demo import au_mesh, identities, render, signal, warp


def _grid_points(w, h, n=7):
    xs, ys = np.meshgrid(np.linspace(30, w - 30, n), np.linspace(30, h - 30, n))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def test_exact_map_of_an_affine_warp_is_its_inverse():
    w, h = 120, 90
    src = np.concatenate([_grid_points(w, h), warp.border_anchors(w, h, 3, 40.0)])
    affine = np.array([[1.1, 0.2, -4.0], [-0.1, 0.9, 6.0]])
    dst = src @ affine[:, :2].T + affine[:, 2]
    map_x, map_y = warp.inverse_map_exact(src, dst, (h, w))
    inv = cv2.invertAffineTransform(affine)
    yy, xx = np.mgrid[0:h, 0:w]
    assert np.allclose(map_x, inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2], atol=1e-3)
    assert np.allclose(map_y, inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2], atol=1e-3)


def test_forward_field_inverse_is_the_inverse_of_the_forward_warp():
    """Each output pixel q maps to a source point s with s + u(s) = q, where u is the
    exact piecewise-affine displacement on the source triangulation."""
    w, h = 160, 140
    rng = np.random.default_rng(3)
    moving = rng.uniform(20, [w - 20, h - 20], (40, 2))
    anchors = warp.border_anchors(w, h, 4, 1.0)
    points = np.concatenate([moving, anchors])
    disp = rng.uniform(-2.0, 2.0, moving.shape)
    field = warp.ForwardField(points, (h, w), (0, 0, w, h))
    identity_affine = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    sx, sy = field.inverse_maps(disp, identity_affine, (h, w), n_iter=6)
    tri = Delaunay(points)
    src = np.stack([sx.ravel(), sy.ravel()], axis=1).astype(np.float64)
    simplex = tri.find_simplex(src)
    ok = simplex >= 0
    trans = tri.transform[simplex[ok]]
    b = np.einsum("nij,nj->ni", trans[:, :2], src[ok] - trans[:, 2])
    bary = np.concatenate([b, 1 - b.sum(axis=1, keepdims=True)], axis=1)
    full = np.concatenate([disp, np.zeros_like(anchors)])
    u = np.einsum("nk,nkd->nd", bary, full[tri.simplices[simplex[ok]]])
    yy, xx = np.mgrid[0:h, 0:w]
    q = np.stack([xx.ravel(), yy.ravel()], axis=1)[ok]
    residual = np.hypot(*(src[ok] + u - q).T)
    assert ok.mean() > 0.99
    # sub-pixel: u is sampled bilinearly between pixel centres (kinks at triangle edges)
    assert np.median(residual) < 0.01 and np.percentile(residual, 99) < 0.1, residual.max()


def test_markers_land_where_planned():
    """Dots drawn at the rest landmarks end up at the planned (moved, placed) positions."""
    w, h = 240, 220
    rng = np.random.default_rng(5)
    rest = _grid_points(w, h, 5) + rng.uniform(-2, 2, (25, 2))
    disp = rng.uniform(-3, 3, rest.shape)
    field = warp.ForwardField(
        np.concatenate([rest, warp.border_anchors(w, h, 4, 1.0)]), (h, w), (0, 0, w, h)
    )
    img = np.zeros((h, w), np.float32)
    for x, y in rest:  # a small Gaussian blob centred exactly on each rest point
        yy, xx = np.mgrid[0:h, 0:w]
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2**2))
    ang = np.radians(8.0)
    place = np.array([[np.cos(ang), -np.sin(ang), 12.0], [np.sin(ang), np.cos(ang), -6.0]])
    out_shape = (h, w)
    mx, my = field.inverse_maps(disp, cv2.invertAffineTransform(place), out_shape)
    out = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    planned = (rest + disp) @ place[:, :2].T + place[:, 2]
    errors = []
    yy, xx = np.mgrid[0:h, 0:w]
    for px, py in planned:
        if not (8 <= px < w - 8 and 8 <= py < h - 8):
            continue
        win = (np.abs(xx - px) <= 5) & (np.abs(yy - py) <= 5)
        wts = out * win
        cx, cy = (wts * xx).sum() / wts.sum(), (wts * yy).sum() / wts.sum()
        errors.append(np.hypot(cx - px, cy - py))
    assert len(errors) >= 15
    assert max(errors) < 0.3, errors


@pytest.fixture(scope="module")
def template():
    return identities.template_shape()


def _areas(points, simplices):
    a, b, c = (points[simplices[:, i]] for i in range(3))
    return 0.5 * (
        (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    )


def test_no_triangle_folds_at_the_strongest_planted_expression(template):
    model = au_mesh.load_model()
    ctrl = render.control_indices(template, render.CONTROL_MIN_DIST)
    tri = Delaunay(template[ctrl])
    rest = _areas(template[ctrl], tri.simplices)
    assert rest.min() > 0
    peaks = {a: spec.cap for a, spec in signal.PLANTED_AUS.items()}
    for aus in [*({a: v} for a, v in peaks.items()), peaks]:
        moved = template + au_mesh.flip_y(model.delta_xy(model.au_vector(aus)))
        assert (_areas(moved[ctrl], tri.simplices) > 0).all(), aus


def test_closed_rest_mouth(template):
    model = au_mesh.load_model()
    mean = au_mesh.flip_y(model.mean_mesh[:, :2])
    assert mean[14, 1] - mean[13, 1] > 7.0  # py-feat's mean mesh: lips parted
    assert template[14, 1] - template[13, 1] == pytest.approx(1.0, abs=0.05)
    # the lips close without crossing anywhere along the mouth
    upper, lower = [82, 13, 312, 81, 311], [87, 14, 317, 178, 402]
    assert (template[lower, 1] - template[upper, 1] > 0).all()
