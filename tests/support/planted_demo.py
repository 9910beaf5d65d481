"""The demo's planted truth in miniature, for the tests that score against it
(tests/test_planted.py, tests/test_break_on_purpose.py): the truth's regions, frames
and CAM files written as the workflow lays them out, and faces placed in frames as the
demo places them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from traitlens.demo.planted import ideal_maps, read_frame_geometry
from traitlens.extract.frame_decode import content_box
from traitlens.ingest.labels import BIG_FIVE

REGIONS = {
    "eyebrows": {"carries_signal": True, "planted_aus": ["AU01"]},
    "eyes": {"carries_signal": True, "planted_aus": ["AU43"]},
    "nose": {"carries_signal": False, "planted_aus": []},
    "mouth": {"carries_signal": True, "planted_aus": ["AU12", "AU26"]},
}
TRUTH = {
    "config": {"width": 100, "height": 100},
    "planted_aus": {"AU01": {}, "AU43": {}, "AU12": {}, "AU26": {}},
    "regions": REGIONS,
}
SIGNAL = ["eyebrows", "eyes", "mouth"]
AUS = ["AU01", "AU43", "AU12", "AU26"]


def write_frames(path: Path, video_id: str, video_size, stored_hw, n_frames: int) -> None:
    """A frames shard of one video, ``video_size`` (w, h) stored in ``stored_hw`` frames."""
    h, w = stored_hw
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((n_frames, h, w, 3), dtype=np.uint8)
        f["video_index"] = np.zeros(n_frames, dtype=np.int32)
        f["frame_index"] = np.arange(n_frames, dtype=np.int32)
        f["video_id"] = np.array([video_id], dtype=object).astype(h5py.string_dtype())
        f["content_box"] = np.array([content_box(video_size, (w, h))], dtype=np.int32)


def write_cam(path: Path, keys, maps: np.ndarray) -> None:
    """A CAM file of the frame model: ``keys`` (video_id, frame_index, shard file) and
    ``maps`` (N, 5, h, w), one per Big Five trait."""
    with h5py.File(path, "w") as f:
        f.attrs.update(
            source="img", method="cam", layer="cam_conv", kind="img", input_size=64, split="test",
            traits=list(BIG_FIVE),
        )  # fmt: skip
        ids, frames, shards = zip(*keys, strict=True)
        f["video_id"] = np.array(ids, dtype=object).astype(h5py.string_dtype())
        f["frame_index"] = np.asarray(frames, dtype=np.int32)
        f["shard_file"] = np.array(shards, dtype=object).astype(h5py.string_dtype())
        f["row"] = np.zeros(len(keys), dtype=np.int64)
        f["maps"] = maps.astype(np.float32)
        f["predictions"] = np.full((len(keys), 5), 0.5, dtype=np.float32)


def faces_in_frames(
    n: int, height: int = 108, width: int = 192, seed: int = 0, jitter: float = 0.1
):
    """n frames with a face of half the frame height (0.8 as wide) within ``jitter`` x
    the frame size of its centre, and its eyebrow, eye and mouth boxes: (face (n, 4),
    [region boxes (n, 4)]). ``jitter`` 0.12 spreads the faces over 0.38-0.62 of the
    width, as the demo does (traitlens.demo.signal.identity_placement)."""
    rng = np.random.default_rng(seed)
    fh, fw = height / 2, height / 2 * 0.8
    cx = width / 2 + rng.uniform(-width * jitter, width * jitter, n)
    cy = height / 2 + rng.uniform(-height * jitter, height * jitter, n)

    def box(x0, y0, x1, y1):
        left, top = cx - fw / 2, cy - fh / 2
        return np.stack([left + x0 * fw, top + y0 * fh, left + x1 * fw, top + y1 * fh], 1)

    regions = [box(0.15, 0.25, 0.85, 0.35), box(0.15, 0.35, 0.85, 0.48), box(0.3, 0.7, 0.7, 0.85)]
    return box(0, 0, 1, 1), regions


def control_demo(
    tmp_path: Path,
    map_hw: tuple[int, int],
    maps_from_truth: bool = True,
    jitter: float = 0.1,
    n: int = 30,
    seed: int = 3,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
):
    """One 192 x 108 video stored as is, ``n`` frames, a face of half its height; a CAM
    file whose five maps per frame are the ideal map of the frame (or, if not, all zero
    but a cell in the top-left corner), passed through ``transform`` (N, 5, h, w) when
    given. Returns the arguments of cam_true_face_overlap."""
    height, width = 108, 192
    face, regions = faces_in_frames(n, height, width, seed=seed, jitter=jitter)
    truth = pd.DataFrame({"video_id": "vC", "frame_index": np.arange(n)})
    for name, box in zip(["face", *SIGNAL], [face, *regions], strict=True):
        for i, c in enumerate(("x0", "y0", "x1", "y1")):
            truth[f"{name}_{c}"] = box[:, i]
    write_frames(tmp_path / "s000.h5", "vC", (width, height), (height, width), n)
    if maps_from_truth:
        maps = np.repeat(ideal_maps(regions, height, width, map_hw), 5, axis=1)
    else:
        maps = np.zeros((n, 5, *map_hw), np.float32)
        maps[:, :, 0, 0] = 1.0
    if transform is not None:
        maps = transform(maps)
    write_cam(tmp_path / "img.h5", [("vC", i, "s000.h5") for i in range(n)], maps)
    geometry = read_frame_geometry([tmp_path / "s000.h5"])
    sizes = pd.DataFrame({"video_id": ["vC"], "width": [width], "height": [height]})
    return tmp_path / "img.h5", truth, geometry, sizes
