"""py-feat's AU -> MediaPipe-mesh model as the demo generator uses it.

The model itself and the similarity helpers live in :mod:`traitlens.aus.au_mesh_model` (the mesh
AU backend inverts the same model); they are re-exported here for the generator. This
module adds the image <-> model-frame mapping the warp needs, and the mirror map.
"""

from __future__ import annotations

import numpy as np

from traitlens.aus.au_mesh_model import (  # noqa: F401 (re-exported for the generator and tests)
    MODEL_FILE,
    N_LANDMARKS,
    N_MESH,
    AuMeshModel,
    Similarity,
    flip_y,
    load_model,
    model_path,
    umeyama,
)


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
