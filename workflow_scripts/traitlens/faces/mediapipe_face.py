"""MediaPipe 0.10.21 face models, models from the wheel (nothing is downloaded).

* :class:`FaceDetector`: ``solutions.face_detection`` with the full-range model.
* :class:`LandmarkModel`: mediapipe's own face-landmark subgraph (478 points with the
  attention model, i.e. ``refine_landmarks=True``) run on the region of interest that
  mediapipe derives from a given detection. ``solutions.face_mesh`` cannot take a
  detection: it runs its own short-range detector, which misses faces smaller than about
  a fifth of a 720p frame (bench/README.md, face stage). Feeding it our full-range
  detection of the face we chose makes the mesh follow that face and skips a second
  detector.
* :class:`FaceMeshDetector`: the bare ``solutions.face_mesh`` (the demo generator and
  the benchmark's reference).

Pixel coordinates here and in the face stage put (0, 0) at the centre of the top-left
pixel (OpenCV's convention, the one ``cv2.warpAffine`` uses): x_px = x_norm * W - 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from traitlens.faces.face_landmarks import N_LANDMARKS

# Detection -> ROI (mediapipe's rule for the face mesh: rotated by the eye keypoints,
# box scaled 1.5x, squared) -> face landmarks with the iris/lips attention model.
_LANDMARK_GRAPH = """
input_stream: "IMAGE:image"
input_stream: "DETECTION:detection"
input_side_packet: "WITH_ATTENTION:with_attention"
output_stream: "LANDMARKS:face_landmarks"
node {
  calculator: "ImagePropertiesCalculator"
  input_stream: "IMAGE:image"
  output_stream: "SIZE:image_size"
}
node {
  calculator: "FaceDetectionFrontDetectionToRoi"
  input_stream: "DETECTION:detection"
  input_stream: "IMAGE_SIZE:image_size"
  output_stream: "ROI:roi"
}
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:face_landmarks"
}
"""
_PRESENCE_PARAM = "facelandmarkcpu__ThresholdingCalculator.threshold"


def mediapipe_version() -> str:
    import mediapipe as mp

    return mp.__version__


@dataclass(frozen=True)
class Detection:
    """One detected face: box x0, y0, x1, y1 and 6 keypoints (eyes, nose tip, mouth,
    ear tragions) in pixels, and the detector's score. ``proto`` is mediapipe's own
    message, handed back to :class:`LandmarkModel`."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray
    proto: object = field(default=None, repr=False, compare=False)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._model.close()


class FaceDetector(_Closing):
    """Every face in an image, best score first (mediapipe face detection)."""

    def __init__(self, min_confidence: float = 0.5, full_range: bool = True):
        import mediapipe as mp

        self._model = mp.solutions.face_detection.FaceDetection(
            model_selection=1 if full_range else 0, min_detection_confidence=min_confidence
        )

    def detect(self, image: np.ndarray) -> list[Detection]:
        image = _rgb(image)
        h, w = image.shape[:2]
        found = self._model.process(image).detections or []
        out = []
        for det in found:
            rel = det.location_data.relative_bounding_box
            x0, y0 = rel.xmin * w, rel.ymin * h
            box = np.array([x0, y0, x0 + rel.width * w, y0 + rel.height * h])
            kps = np.array([[k.x * w, k.y * h] for k in det.location_data.relative_keypoints])
            out.append(Detection(box - 0.5, float(det.score[0]), kps.reshape(-1, 2) - 0.5, det))
        return sorted(out, key=lambda d: -d.score)


class LandmarkModel(_Closing):
    """478 face landmarks (x, y pixels; z in x's scale) of the face a detection marks."""

    def __init__(self, min_confidence: float = 0.5):
        from mediapipe.python.solution_base import SolutionBase

        self._model = SolutionBase(
            graph_config=_LANDMARK_GRAPH,
            side_inputs={"with_attention": True},
            calculator_params={_PRESENCE_PARAM: min_confidence},
            outputs=["face_landmarks"],
        )

    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray | None:
        """(478, 3) float64, or None when the model finds no face in the region."""
        if detection.proto is None:
            raise ValueError("detection has no mediapipe message (make it with FaceDetector)")
        image = _rgb(image)
        out = self._model.process({"image": image, "detection": detection.proto})
        if out.face_landmarks is None:
            return None
        return landmark_array(out.face_landmarks.landmark, image.shape[1], image.shape[0])


def landmark_array(landmarks, width: int, height: int) -> np.ndarray:
    """mediapipe normalised landmarks -> (n, 3) pixels; z scaled like x (mediapipe's
    z uses roughly the scale of x; smaller is nearer the camera)."""
    pts = np.array([(p.x, p.y, p.z) for p in landmarks], dtype=np.float64)
    if len(pts) != N_LANDMARKS:
        raise RuntimeError(f"mediapipe returned {len(pts)} landmarks, expected {N_LANDMARKS}")
    pts *= (width, height, width)
    pts[:, :2] -= 0.5
    return pts


class FaceMeshDetector(_Closing):
    """The bare ``solutions.face_mesh`` (478 landmarks incl. irises, one face).

    ``static=True`` treats every image on its own (its short-range detector runs on each);
    ``static=False`` tracks from the previous image's landmarks (a video stream).
    """

    def __init__(self, static: bool = True):
        import mediapipe as mp

        self._model = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static,
            refine_landmarks=True,
            max_num_faces=1,
            min_detection_confidence=0.5,
        )

    def landmarks(self, image_rgb: np.ndarray) -> np.ndarray | None:
        """(478, 2) landmark pixels of the face in ``image_rgb``, or None.

        x_norm * W (the demo generator's convention, kept so its data stay identical)."""
        res = self._model.process(np.ascontiguousarray(image_rgb))
        if not res.multi_face_landmarks:
            return None
        h, w = image_rgb.shape[:2]
        pts = res.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h] for p in pts], dtype=np.float64)
