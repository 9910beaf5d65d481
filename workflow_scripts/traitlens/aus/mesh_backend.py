"""The offline AU backend: invert py-feat's linear AU -> mesh model on the mediapipe mesh.

Per frame (all frames of a shard at once):

1. Similarity-align the measured landmarks to the model's ``mean_aligned_mesh``: image
   (x right, y down, z away) -> model frame (y up, z towards the viewer), then the
   least-squares scale, rotation and translation over the ``align`` landmarks
   (``upper``: the mesh points above the nose tip, which expressions move least;
   ``all``: the 468 mesh points). x/y only by default (``use_z: false``): on the demo,
   mediapipe's z is a guess from the image and fitting it lowered every planted AU's r.
2. Residual from the neutral face: aligned mesh minus the model's intercept (the mesh
   at all AUs 0), its lips brought together to ``neutral_lip_gap`` model units (the
   intercept's are 8.2 apart, an artefact of the regression: by FACS, parted lips are
   AU25; from parted neutral lips every closed mouth reads as a negative jaw drop,
   clipped at 0), aligned the same way.
3. Weighted, regularised, bounded least squares for the 20 AUs:

       min_a  sum_v w_v |r_v - (B' a + N' c)_v|^2 + ridge |a|^2 + sparsity sum(a)
       s.t.   0 <= a <= max_intensity, c free

   ``B'`` is the AU basis with the part the alignment removes projected out (a jaw drop
   also shifts and scales the least-squares fit, so its aligned displacement differs
   from the raw one); ``N'`` are two free nuisance modes (face width vs height, shear:
   face shapes differ in aspect, a similarity cannot absorb that, and unmodelled it
   turns into brow and mouth AUs). ``w_v`` weights vertices by region
   (``region_weights``): the face oval (a silhouette mediapipe guesses) and the
   featureless cheeks and forehead carry less of the expression and more of the
   person. ``ridge`` and ``sparsity`` (an L1 term; with a >= 0 it is linear) fight the
   model's collinear AU columns (|cos| up to 0.92 between AU displacement fields): a
   face shows few AUs at once.

Everything but the alignment and one (n, 2*V) @ (2*V, 22) product is precomputed; the
bounded solve is :func:`traitlens.aus.box_qp.solve_box_qp` on 22 variables per frame
(~8,000 frames/s on one core, bench/README.md).

The defaults were chosen on the planted demo (600 workflow frames, 7,200 frames of
mediapipe in video mode) over align x region weights x ridge x sparsity; many settings
lie within 0.02 of each other, these keep the cross-talk lowest. Measured there:
x/y beat x/y/z (AU01 r 0.70 vs 0.44); the aspect modes add 0.1 to AU01 and AU26; the
closed-lip neutral lifts AU26 from 0.64 to 0.76 and halves the largest cross-talk
(AU24, 0.60 -> 0.09); ridge and sparsity trade the planted AUs' r against cross-talk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from traitlens.aus.au_mesh_model import (
    N_LANDMARKS,
    N_MESH,
    AuMeshModel,
    close_mouth,
    flip_y,
    load_model,
)
from traitlens.aus.box_qp import solve_box_qp
from traitlens.core.config import from_section
from traitlens.core.errors import UserError

REGION_NAMES = ("eyebrows", "eyes", "nose", "mouth", "face_oval", "other")
DEFAULT_REGION_WEIGHTS = {
    "eyebrows": 1.0,
    "eyes": 1.0,
    "nose": 0.3,
    "mouth": 1.0,
    "face_oval": 0.3,
    "other": 0.3,
}
NOSE_TIP = 1  # mediapipe landmark; 'upper' alignment uses the points above it
ALIGN_SETS = ("upper", "all")


@dataclass(frozen=True)
class MeshParams:
    """Config ``aus.mesh`` (see the schema for meanings and units)."""

    align: str = "upper"
    use_z: bool = False
    region_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_REGION_WEIGHTS)
    )
    ridge: float = 30.0
    sparsity: float = 30.0
    max_intensity: float = 1.0
    aspect_nuisance: bool = True
    neutral_lip_gap: float | None = 1.0

    def __post_init__(self) -> None:
        # the one rule the schema cannot state: some region must weigh in the fit
        if not any(w > 0 for w in self.region_weights.values()):
            raise UserError(
                f"config aus.mesh.region_weights {dict(self.region_weights)}: at least one "
                "region weight must be > 0"
            )

    @classmethod
    def from_mapping(cls, cfg: Mapping | None) -> MeshParams:
        """From the validated ``aus.mesh`` section."""
        return from_section(cls, cfg, "aus.mesh")


# --- geometry -------------------------------------------------------------------------


def image_to_model_axes(landmarks: np.ndarray) -> np.ndarray:
    """Image axes (y down, z away) -> model axes (y up, z towards the viewer).

    Negating y and z is a rotation (180 degrees about x), so a proper similarity can
    then align the mesh to the model's.
    """
    out = np.array(landmarks, dtype=np.float64, copy=True)
    out[..., 1:3] *= -1.0
    return out


def align_batch(points: np.ndarray, target: np.ndarray, idx: np.ndarray, dims: int) -> np.ndarray:
    """Similarity-align every mesh in ``points`` (n, V, 3) to ``target`` (V, 3).

    The least-squares (Umeyama) scale, rotation and translation over landmarks ``idx``,
    in the first ``dims`` axes (2: x/y, the rotation is in-plane; 3: full 3-D). With
    dims 2, z is only scaled and centred. Returns the aligned meshes (n, V, 3).
    """
    x = points[:, idx, :dims]
    y = target[idx, :dims]
    mx = x.mean(axis=1, keepdims=True)
    my = y.mean(axis=0)
    xc, yc = x - mx, y - my
    var = (xc**2).sum(axis=(1, 2))
    if dims == 2:
        # closed form in 2-D: the angle maximising sum <R x_i, y_i>
        dot = np.einsum("nkd,kd->n", xc, yc)
        cross = np.einsum("nk,k->n", xc[..., 0], yc[:, 1]) - np.einsum(
            "nk,k->n", xc[..., 1], yc[:, 0]
        )
        norm = np.hypot(dot, cross)
        scale = norm / var
        cos, sin = dot / norm, cross / norm
        rot = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    else:
        cov = np.einsum("kd,nke->nde", yc, xc)
        u, sig, vt = np.linalg.svd(cov)
        d = np.ones((len(points), 3))
        d[:, 2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
        rot = np.einsum("nij,nj,njk->nik", u, d, vt)
        scale = (sig * d).sum(axis=1) / var
    out = np.empty_like(points, dtype=np.float64)
    moved = np.einsum("nij,nvj->nvi", rot, points[..., :dims] - mx)
    out[..., :dims] = scale[:, None, None] * moved + my
    if dims == 2:
        z_mean = points[:, idx, 2].mean(axis=1, keepdims=True)
        out[..., 2] = scale[:, None] * (points[..., 2] - z_mean) + target[idx, 2].mean()
    return out


def similarity_tangent(mesh: np.ndarray, dims: int) -> np.ndarray:
    """Infinitesimal similarity motions of ``mesh`` (V, dims): (m, V*dims).

    Translations, rotations (1 in 2-D, 3 in 3-D) and scale about the centroid.
    """
    c = mesh - mesh.mean(axis=0)
    modes = []
    for axis in range(dims):
        t = np.zeros_like(c)
        t[:, axis] = 1.0
        modes.append(t)
    planes = [(0, 1)] if dims == 2 else [(0, 1), (1, 2), (0, 2)]
    for i, j in planes:
        r = np.zeros_like(c)
        r[:, i], r[:, j] = -c[:, j], c[:, i]
        modes.append(r)
    modes.append(c)
    return np.stack([m.ravel() for m in modes])


def project_out(basis: np.ndarray, modes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``basis`` rows minus their weighted least-squares fit by ``modes`` rows.

    With ``weights`` = the alignment's landmark set, this is (to first order) what the
    alignment does to a displacement: the part a similarity can explain is removed.
    """
    gram = (modes * weights) @ modes.T
    coef = np.linalg.solve(gram, (modes * weights) @ basis.T)
    return basis - coef.T @ modes


def aspect_modes(mesh: np.ndarray) -> np.ndarray:
    """Face-shape nuisance displacements of ``mesh`` (V, 2): widen-vs-heighten, shear."""
    c = mesh - mesh.mean(axis=0)
    stretch = np.stack([c[:, 0], -c[:, 1]], axis=1)
    shear = np.stack([c[:, 1], c[:, 0]], axis=1)
    return np.stack([stretch.ravel(), shear.ravel()])


def region_of_landmarks() -> np.ndarray:
    """Region name per mesh landmark (468,): the first of REGION_NAMES that holds it."""
    from traitlens.faces.face_landmarks import face_oval, region_landmarks

    names = np.full(N_MESH, "other", dtype=object)
    groups = region_landmarks()
    names[list(face_oval())] = "face_oval"
    for region in ("nose", "eyes", "eyebrows", "mouth"):
        names[[i for i in groups[region] if i < N_MESH]] = region
    return names


def landmark_weights(region_weights: Mapping[str, float]) -> np.ndarray:
    """Fit weight per landmark (478,); the iris points (gaze, not expression) get 0."""
    w = np.zeros(N_LANDMARKS)
    w[:N_MESH] = [region_weights.get(r, 0.0) for r in region_of_landmarks()]
    return w


def neutral_face(model: AuMeshModel, lip_gap: float | None) -> np.ndarray:
    """The model's face at all AUs 0 (478, 3), lips closed to ``lip_gap`` units."""
    face = np.array(model.intercept, dtype=np.float64, copy=True)
    if lip_gap is not None:  # close_mouth works y down
        face[:, :2] = flip_y(close_mouth(flip_y(face[:, :2]), residual_gap=lip_gap))
    return face


def alignment_set(model: AuMeshModel, which: str) -> np.ndarray:
    if which == "all":
        return np.arange(N_MESH)
    return np.flatnonzero(model.mean_mesh[:N_MESH, 1] > model.mean_mesh[NOSE_TIP, 1])


# --- the solver -----------------------------------------------------------------------


class MeshAuSolver:
    """AU intensities from mediapipe meshes; build once, call :meth:`estimate` per batch."""

    def __init__(self, params: MeshParams | None = None, model: AuMeshModel | None = None):
        self.params = params = params or MeshParams()
        self.model = model = model or load_model()
        self.au_columns = model.au_columns
        dims = 3 if params.use_z else 2
        self.dims = dims
        self.align_idx = alignment_set(model, params.align)
        w = landmark_weights(params.region_weights)
        self.fit_idx = np.flatnonzero(w > 0)
        # the neutral face, seen through the same alignment as a measured mesh
        face = neutral_face(model, params.neutral_lip_gap)
        neutral = align_batch(face[None], model.mean_mesh, self.align_idx, dims)[0]
        self.neutral = neutral[self.fit_idx, :dims].ravel()

        n_au = len(self.au_columns)
        rows = [model.coef[:, :, :dims].reshape(n_au, -1)]
        if params.aspect_nuisance:
            nuis = np.zeros((2, N_LANDMARKS, dims))
            nuis[:, :, :2] = aspect_modes(model.mean_mesh[:, :2]).reshape(2, N_LANDMARKS, 2)
            rows.append(nuis.reshape(2, -1))
        basis = np.concatenate(rows)
        align_w = np.zeros((N_LANDMARKS, dims))
        align_w[self.align_idx] = 1.0
        modes = similarity_tangent(model.mean_mesh[:, :dims], dims)
        basis = project_out(basis, modes, align_w.ravel())
        basis = basis.reshape(len(basis), N_LANDMARKS, dims)[:, self.fit_idx].reshape(
            len(basis), -1
        )
        wflat = np.repeat(w[self.fit_idx], dims)
        k = len(basis)
        penalised = np.r_[np.ones(n_au), np.zeros(k - n_au)]
        self.n_au = n_au
        self._bw = (basis * wflat).T  # (2V, k): g = r @ _bw
        self._h = (basis * wflat) @ basis.T + params.ridge * np.diag(penalised)
        self._l1 = params.sparsity * penalised
        self._lo = np.r_[np.zeros(n_au), np.full(k - n_au, -np.inf)]
        self._hi = np.r_[np.full(n_au, params.max_intensity), np.full(k - n_au, np.inf)]

    def residuals(self, landmarks: np.ndarray) -> np.ndarray:
        """Aligned fit-landmark displacements from the neutral face, (n, V*dims)."""
        pts = image_to_model_axes(landmarks)
        aligned = align_batch(pts, self.model.mean_mesh, self.align_idx, self.dims)
        return aligned[:, self.fit_idx, : self.dims].reshape(len(pts), -1) - self.neutral

    def estimate(self, landmarks: np.ndarray) -> np.ndarray:
        """AU intensities (n, 20) in ``au_columns`` order from landmarks (n, 478, 3).

        Landmarks are image pixels (x right, y down; z in the scale of x, smaller =
        nearer), as mediapipe gives them. Rows with any non-finite landmark give NaN.
        """
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 3):
            raise ValueError(f"landmarks must be (n, {N_LANDMARKS}, 3), got {landmarks.shape}")
        out = np.full((len(landmarks), self.n_au), np.nan)
        ok = np.isfinite(landmarks).all(axis=(1, 2))
        if ok.any():
            g = self.residuals(landmarks[ok]) @ self._bw - self._l1
            out[ok] = solve_box_qp(self._h, g, self._lo, self._hi)[:, : self.n_au]
        return out
