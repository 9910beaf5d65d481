"""py-feat's AU->mesh model as the generator uses it, and the alignment helpers."""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.demo import au_mesh, regions


def _env():
    import os
    from pathlib import Path

    scripts = str(Path(__file__).resolve().parents[1] / "workflow_scripts")
    return {**os.environ, "PYTHONPATH": scripts + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.fixture(scope="module")
def model():
    return au_mesh.load_model()


def image_delta(model, **aus):
    """Displacement in image orientation (y down) for the model's own rest frame."""
    return au_mesh.flip_y(model.delta_xy(model.au_vector(aus)))


@pytest.mark.media
def test_model_loads_without_feat_import(model):
    import subprocess
    import sys

    # read through importlib, never imported (import feat costs ~12 s); checked in a
    # fresh interpreter since another test may import feat
    code = (
        "import sys; from traitlens.demo import au_mesh; au_mesh.load_model(); "
        "assert 'feat' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    assert len(model.au_columns) == 20 and model.au_columns[0] == "AU01"
    assert model.coef.shape == (20, 478, 3) and model.mean_mesh.shape == (478, 3)
    # model frame: y points up (forehead above chin)
    assert model.mean_mesh[10, 1] > model.mean_mesh[152, 1]
    assert np.allclose(model.delta(np.zeros(20)), 0.0)


def test_smile_moves_mouth_corners_up_and_out(model):
    d = image_delta(model, AU12=1.0)
    # 61 is the mouth corner on the image's left, 291 on its right
    assert d[61, 1] < -2.5 and d[291, 1] < -2.5  # up
    assert d[61, 0] < -2.5 and d[291, 0] > 2.5  # out


def test_brow_raise_moves_brows_up(model):
    d = image_delta(model, AU01=1.0)
    brows = list(regions.region_landmarks()["eyebrows"])
    assert d[brows, 1].mean() < -3.0
    assert d[107, 1] < -3.5 and d[336, 1] < -3.5  # inner brows


def test_jaw_drop_and_eye_closure(model):
    assert image_delta(model, AU26=1.0)[14, 1] > 10.0  # lower lip down
    d = image_delta(model, AU43=1.0)
    assert d[159, 1] > 8.0 and d[386, 1] > 8.0  # upper eyelids down


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 2))
    ang = 0.4
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = 2.5 * src @ rot.T + [3.0, -1.0]
    sim = au_mesh.umeyama(src, dst)
    assert sim.scale == pytest.approx(2.5)
    assert sim.angle_deg == pytest.approx(np.degrees(ang))
    assert np.allclose(sim.apply(src), dst)
    assert np.allclose(sim.inverse().apply(dst), src)


def test_model_delta_lands_in_image_orientation(model):
    # an image face: the model mesh flipped to y-down, turned 90 degrees, 2x, shifted
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    img = 2.0 * au_mesh.flip_y(model.mean_mesh[:, :2]) @ rot.T + [500.0, 300.0]
    to_model = au_mesh.align_image_to_model(img, model)
    assert to_model.scale == pytest.approx(0.5)
    delta = model.delta_xy(model.au_vector({"AU26": 1.0}))
    moved = au_mesh.model_delta_to_image(delta, to_model)
    # the lower lip moves 'down the face': in this turned image that is -x, twice as far
    expected = 2.0 * au_mesh.flip_y(delta) @ rot.T
    assert np.allclose(moved, expected)
    assert moved[14, 0] < -20.0


def test_mirror_permutation(model):
    perm = au_mesh.mirror_permutation(model)
    assert np.array_equal(perm[perm], np.arange(478))
    assert perm[33] == 263 and perm[61] == 291 and perm[468] == 473
    assert perm[1] == 1  # nose tip on the midline
