"""MediaPipe face-mesh landmark groups shared by the face stage and the demo generator.

Every group comes from mediapipe's own connection lists (``face_mesh_connections``, a
pure-Python module), so a region name means the same landmarks everywhere in the
project. 'Left' and 'right' are the subject's: the subject's right eye is on the image's
left in a frontal, unmirrored face.
"""

from __future__ import annotations

import functools

import numpy as np

N_LANDMARKS = 478  # 468 mesh points + 2 x 5 iris points (refine_landmarks=True)
REGIONS = ("eyebrows", "eyes", "nose", "mouth")


def connections():
    """mediapipe's face-mesh connection module (edge sets between landmark indices)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return fmc


def edge_indices(*edge_sets) -> tuple[int, ...]:
    """The sorted landmark indices that the given edge sets touch."""
    return tuple(sorted({i for edges in edge_sets for edge in edges for i in edge}))


@functools.cache
def region_landmarks() -> dict[str, tuple[int, ...]]:
    """{region: landmark indices} for eyebrows, eyes, nose and mouth (both sides)."""
    c = connections()
    return {
        "eyebrows": edge_indices(c.FACEMESH_LEFT_EYEBROW, c.FACEMESH_RIGHT_EYEBROW),
        "eyes": edge_indices(c.FACEMESH_LEFT_EYE, c.FACEMESH_RIGHT_EYE),
        "nose": edge_indices(c.FACEMESH_NOSE),
        "mouth": edge_indices(c.FACEMESH_LIPS),
    }


@functools.cache
def eye_contours() -> dict[str, tuple[int, ...]]:
    """{'right': ..., 'left': ...}: the 16 eyelid-contour landmarks of each eye.

    Their mean is the eye centre the alignment uses: unlike the iris landmarks it does
    not move with the gaze, so a glance sideways does not shift the aligned face.
    """
    c = connections()
    return {"right": edge_indices(c.FACEMESH_RIGHT_EYE), "left": edge_indices(c.FACEMESH_LEFT_EYE)}


def paths(edges) -> list[tuple[tuple[int, ...], bool]]:
    """Split an edge set whose vertices have degree <= 2 into ordered polylines.

    Returns ``[(vertices, closed), ...]``: closed loops start at their smallest vertex,
    open paths at their smaller end, so the result does not depend on set order.
    """
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    if any(len(n) > 2 for n in nbrs.values()):
        raise ValueError("edge set branches: not a union of polylines")
    out, seen = [], set()
    ends = sorted(v for v, n in nbrs.items() if len(n) == 1)
    for start in ends + sorted(nbrs):
        if start in seen:
            continue
        walk, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in nbrs[cur] if n != prev and (n not in seen or n == start)]
            if not nxt or nxt[0] == start:
                break
            prev, cur = cur, nxt[0]
            walk.append(cur)
            seen.add(cur)
        out.append((tuple(walk), len(nbrs[start]) == 2))
    return out


def closed_loop(edges) -> tuple[int, ...]:
    """Order the vertices of one closed polyline given as an unordered edge set."""
    loops = [p for p, closed in paths(edges) if closed]
    if len(loops) != 1:
        raise ValueError(f"expected one closed loop, found {len(loops)}")
    return loops[0]


@functools.cache
def face_oval() -> tuple[int, ...]:
    """The face-oval landmarks in polygon order."""
    return closed_loop(connections().FACEMESH_FACE_OVAL)


def polygon_area(points: np.ndarray) -> float:
    """Signed area of a polygon (shoelace)."""
    x, y = np.asarray(points, dtype=np.float64).T
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
