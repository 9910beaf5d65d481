"""The mesh AU backend on synthetic meshes: py-feat's model forward, then our inverse."""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.aus import mesh_backend as amb
from traitlens.aus.au_mesh_model import N_LANDMARKS, load_model
from traitlens.core.errors import UserError

BROW = ("AU01", "AU02", "AU04")
MOUTH = ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28")


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def solver(model):
    return amb.MeshAuSolver(amb.MeshParams(), model)


def to_image(mesh: np.ndarray, rng, noise: float = 0.0) -> np.ndarray:
    """A model-frame mesh as mediapipe would report it: y down, z away, turned, scaled,
    shifted, plus landmark noise (model units, before scaling)."""
    ang = rng.uniform(-0.4, 0.4)
    scale = rng.uniform(0.5, 3.0)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    img = np.array(mesh, dtype=np.float64)
    img[..., 1:] *= -1.0
    img[..., :2] = scale * img[..., :2] @ rot.T + rng.uniform(100, 600, 2)
    img[..., 2] *= scale
    return img + rng.normal(0.0, noise * scale, img.shape)


def face(model, aus: dict[str, float]) -> np.ndarray:
    """py-feat's model forward from the solver's neutral face (lips together)."""
    return amb.neutral_face(model, 1.0) + model.delta(model.au_vector(aus))


def estimate(solver, model, aus: dict[str, float], n=6, noise=0.3, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mesh = face(model, aus)
    return solver.estimate(np.stack([to_image(mesh, rng, noise) for _ in range(n)]))


def column(solver, est, au):
    return est[:, solver.au_columns.index(au)]


def test_neutral_face_gives_no_aus(solver, model):
    est = estimate(solver, model, {})
    assert est.shape == (6, 20)
    assert np.abs(est).max() < 0.05


def test_smile_lands_in_au12_only(solver, model):
    est = estimate(solver, model, {"AU12": 0.7})
    assert column(solver, est, "AU12").min() > 0.55
    others = [c for c in solver.au_columns if c != "AU12"]
    assert max(column(solver, est, c).max() for c in others) < 0.08


def test_brow_raise_lands_in_brow_aus_not_mouth(solver, model):
    est = estimate(solver, model, {"AU01": 0.6, "AU02": 0.6})
    assert column(solver, est, "AU01").min() > 0.45
    assert column(solver, est, "AU02").min() > 0.4
    assert max(column(solver, est, c).max() for c in MOUTH) < 0.05
    single = estimate(solver, model, {"AU01": 0.7}, seed=1)
    assert column(solver, single, "AU01").min() > 0.45
    assert max(column(solver, single, c).max() for c in MOUTH) < 0.05


def test_similarity_does_not_change_the_estimate(solver, model):
    mesh = face(model, {"AU26": 0.5, "AU43": 0.4})
    rng = np.random.default_rng(5)
    est = solver.estimate(np.stack([to_image(mesh, rng) for _ in range(4)]))
    assert np.allclose(est, est[0], atol=1e-6)


def test_neutral_lips_are_closed(model, solver):
    closed = amb.neutral_face(model, 1.0)
    assert closed[14, 1] - closed[13, 1] == pytest.approx(-1.0, abs=1e-3)  # y up
    assert model.intercept[13, 1] - model.intercept[14, 1] > 7.0  # the model's are apart
    assert np.array_equal(amb.neutral_face(model, None), model.intercept)
    # the intercept's parted lips read as a jaw drop / lips part from the closed neutral
    rng = np.random.default_rng(0)
    est = solver.estimate(to_image(model.intercept, rng)[None])[0]
    mouth_open = sum(est[solver.au_columns.index(c)] for c in ("AU25", "AU26"))
    assert mouth_open > 0.15
    opened = amb.MeshAuSolver(amb.MeshParams(neutral_lip_gap=None), model)
    assert np.abs(opened.estimate(to_image(model.intercept, rng)[None])).max() < 0.02


@pytest.mark.parametrize("use_z", [False, True])
def test_bounds_are_respected(model, use_z):
    params = amb.MeshParams(max_intensity=0.5, use_z=use_z)
    solver = amb.MeshAuSolver(params, model)
    rng = np.random.default_rng(3)
    wild = model.mesh(rng.uniform(-2, 3, (30, 20)))
    est = solver.estimate(np.stack([to_image(m, rng, 2.0) for m in wild]))
    assert np.isfinite(est).all()
    assert est.min() >= 0.0 and est.max() <= 0.5 + 1e-12
    assert (est == 0.5).any() and (est == 0.0).any()  # the bounds are active


def test_rows_without_landmarks_are_nan(solver, model):
    lm = np.stack([to_image(face(model, {}), np.random.default_rng(0))] * 3)
    lm[1] = np.nan
    est = solver.estimate(lm)
    assert np.isnan(est[1]).all() and np.isfinite(est[[0, 2]]).all()
    with pytest.raises(ValueError, match="478"):
        solver.estimate(np.zeros((2, 468, 3)))


@pytest.mark.parametrize("dims", [2, 3])
def test_align_batch_undoes_a_similarity(model, dims):
    rng = np.random.default_rng(7)
    target = model.mean_mesh
    idx = amb.alignment_set(model, "upper")
    if dims == 2:
        moved = to_image(target, rng)
        moved[..., 1:] *= -1.0  # back to model axes, still turned/scaled/shifted
    else:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        moved = 1.7 * target @ q.T + [5.0, -3.0, 2.0]
    out = amb.align_batch(moved[None], target, idx, dims)[0]
    assert np.allclose(out[:, :dims], target[:, :dims], atol=1e-8)


def test_projected_basis_has_no_similarity_part(model):
    modes = amb.similarity_tangent(model.mean_mesh[:, :2], 2)
    w = np.zeros((N_LANDMARKS, 2))
    w[amb.alignment_set(model, "upper")] = 1.0
    basis = amb.project_out(model.coef[:, :, :2].reshape(20, -1), modes, w.ravel())
    assert np.abs((modes * w.ravel()) @ basis.T).max() < 1e-6


def test_region_weights(model):
    w = amb.landmark_weights({"mouth": 2.0, "face_oval": 0.0, "other": 0.5})
    assert w.shape == (N_LANDMARKS,)
    assert w[13] == 2.0 and w[152] == 0.0 and w[468:].max() == 0.0  # lip, chin, irises
    assert set(amb.region_of_landmarks()) == set(amb.REGION_NAMES)


def test_params_from_config():
    # bad values stop at the schema (tests/test_config_sections.py); what it cannot state:
    params = amb.MeshParams.from_mapping({"ridge": 5, "region_weights": {"mouth": 2}})
    assert params.ridge == 5.0 and dict(params.region_weights) == {"mouth": 2}
    assert amb.MeshParams.from_mapping(None) == amb.MeshParams()
    with pytest.raises(UserError, match="aus.mesh.region_weights.*at least one"):
        amb.MeshParams.from_mapping({"region_weights": dict.fromkeys(amb.REGION_NAMES, 0.0)})
