"""MediaPipe landmark groups the generator needs: semantic regions, face oval, inner lips.

The shared groups live in ``traitlens.faces.face_landmarks`` (from mediapipe's own connection
lists), so the region names here mean the same landmarks the face stage uses.
"""

from __future__ import annotations

from traitlens.faces.face_landmarks import (  # noqa: F401 (re-exported for the generator)
    REGIONS,
    face_oval,
    polygon_area,
    region_landmarks,
)

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
