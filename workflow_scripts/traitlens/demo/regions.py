"""MediaPipe landmark groups the generator needs: semantic regions, face oval, inner lips.

The groups come from mediapipe's own connection lists (a pure-Python module), so the
region names here mean the same landmarks the face stage uses.
"""

from __future__ import annotations

import functools

import numpy as np

REGIONS = ("eyebrows", "eyes", "nose", "mouth")


def _connections():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return fmc


def _indices(*edge_sets) -> tuple[int, ...]:
    return tuple(sorted({i for edges in edge_sets for edge in edges for i in edge}))


@functools.cache
def region_landmarks() -> dict[str, tuple[int, ...]]:
    """{region: landmark indices} for eyebrows, eyes, nose and mouth (both sides)."""
    c = _connections()
    return {
        "eyebrows": _indices(c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW),
        "eyes": _indices(c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE),
        "nose": _indices(c.FACEMESH_NOSE),
        "mouth": _indices(c.FACEMESH_LIPS),
    }


def _closed_loop(edges) -> tuple[int, ...]:
    """Order the vertices of a closed polyline given as an unordered edge set."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    start = min(nbrs)
    loop = [start]
    prev, cur = None, start
    while True:
        nxt = [n for n in nbrs[cur] if n != prev][0]
        if nxt == start:
            break
        loop.append(nxt)
        prev, cur = cur, nxt
    return tuple(loop)


@functools.cache
def face_oval() -> tuple[int, ...]:
    """The face-oval landmarks in polygon order."""
    return _closed_loop(_connections().FACEMESH_FACE_OVAL)


# The inner lip contour (the mouth opening): upper lip left to right, lower lip back.
INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER = (324, 318, 402, 317, 14, 87, 178, 88, 95)
INNER_LIPS = INNER_UPPER + INNER_LOWER


# Eye openings: (outer corner, upper lid ..., inner corner, lower lid ...), and the
# centre of each upper and lower lid. 'Right' is the subject's right (image left).
EYES = {
    "right": {
        "opening": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
        "upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
        "lids": (159, 145),
    },
    "left": {
        "opening": (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
        "upper": (263, 466, 388, 387, 386, 385, 384, 398, 362),
        "lids": (386, 374),
    },
}


def polygon_area(points: np.ndarray) -> float:
    """Signed area of a polygon (shoelace)."""
    x, y = np.asarray(points, dtype=np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
