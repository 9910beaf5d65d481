"""Scoring against the planted truth: true boxes through the content box, the CAM share
on known maps, detector precision, AU significance, and the JSON/TSV of the entry."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from snakemake.iocontainers import Namedlist

from traitlens.core.errors import UserError
from traitlens.demo.planted import (
    CONTRACT_KEYS,
    au_significance,
    cam_true_face_overlap,
    detector_precision,
    json_ready,
    map_boxes,
    read_frame_geometry,
    score_planted,
    true_stored_boxes,
)
from traitlens.extract.frame_decode import content_box
from traitlens.ingest.labels import BIG_FIVE

ENTRY = Path(__file__).resolve().parents[1] / "workflow_scripts" / "validate_planted.py"
REGIONS = {
    "eyebrows": {"carries_signal": True},
    "eyes": {"carries_signal": True},
    "nose": {"carries_signal": False},
    "mouth": {"carries_signal": True},
}
TRUTH = {
    "config": {"width": 100, "height": 100},
    "planted_aus": {"AU01": {}, "AU43": {}, "AU12": {}},
    "regions": REGIONS,
}


# --- geometry --------------------------------------------------------------------------


def test_true_boxes_map_through_a_letterboxing_content_box():
    # a square 100 x 100 video in a 64 x 40 frame box: scaled by 0.4, pillarboxed
    box = content_box((100, 100), (64, 40))
    assert box == (12, 0, 40, 40)
    whole = map_boxes([[0, 0, 99, 99]], 100, 100, box)
    # pixel centres 0 .. 99 (edges -0.5 .. 99.5) land on edges 11.5 .. 51.5 of the picture
    np.testing.assert_allclose(whole, [[11.7, -0.3, 51.3, 39.3]])
    centre = map_boxes([[49.5, 49.5, 49.5, 49.5]], 100, 100, box)
    np.testing.assert_allclose(centre, [[31.5, 19.5, 31.5, 19.5]])  # centre of x 12..51
    # a wide 200 x 50 video in the same box: scaled by 0.32, letterboxed top and bottom
    wide = content_box((200, 50), (64, 40))
    assert wide == (0, 12, 64, 16)
    np.testing.assert_allclose(
        map_boxes([[-0.5, -0.5, 199.5, 49.5]], 200, 50, wide), [[-0.5, 11.5, 63.5, 27.5]]
    )
    # one call, several rows, each with its own video size and content box
    both = map_boxes(
        [[0, 0, 99, 99], [-0.5, -0.5, 199.5, 49.5]], [100, 200], [100, 50], [box, wide]
    )
    np.testing.assert_allclose(both, [[11.7, -0.3, 51.3, 39.3], [-0.5, 11.5, 63.5, 27.5]])


# --- synthetic demo outputs with known answers -------------------------------------------
# Shard s000: video vA (100 x 100) stored in 40 x 64 frames (content box 12, 0, 40, 40).
# Shard s001: video vB (100 x 50) stored in 48 x 48 frames (content box 0, 12, 48, 24).
# True boxes cover each whole video: columns 12..51 of s000's frames; rows 12..35 of s001's.


def _write_frames(path: Path, video_id: str, video_size, stored_hw, n_frames: int) -> None:
    h, w = stored_hw
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((n_frames, h, w, 3), dtype=np.uint8)
        f["video_index"] = np.zeros(n_frames, dtype=np.int32)
        f["frame_index"] = np.arange(n_frames, dtype=np.int32)
        f["video_id"] = np.array([video_id], dtype=object).astype(h5py.string_dtype())
        f["content_box"] = np.array([content_box(video_size, (w, h))], dtype=np.int32)


def _write_cam(path: Path, keys, maps: np.ndarray) -> None:
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


CAM_KEYS = [("vA", 0, "s000.h5"), ("vA", 1, "s000.h5"), ("vB", 0, "s001.h5")]


def _cam_maps() -> np.ndarray:
    """Maps at s000's own 40 x 64 resolution (upsampling is then the identity).
    vA/0: on the face, on the padding, half on, all zero (empty), on the face;
    vA/1: has no true box; vB/0: constant maps (all of the 48 x 48 frame, half the box)."""
    maps = np.zeros((3, 5, 40, 64), dtype=np.float32)
    maps[0, 0, :, 20:31] = 1.0  # columns 20..30: inside 12..51
    maps[0, 1, :, 0:6] = 1.0  # padding columns 0..5
    maps[0, 2, :, 6:18] = 1.0  # columns 6..17: 12..17 inside, half
    maps[0, 4, 5:9, 30:40] = 2.0
    maps[1] = 1.0
    maps[2] = 0.7
    return maps


@pytest.fixture
def demo(tmp_path):
    """The files of a tiny demo run (see the comment above) and the answers."""
    truth_dir = tmp_path / "ground_truth"
    truth_dir.mkdir()
    (truth_dir / "planted.json").write_text(json.dumps(TRUTH))
    truth_frames = pd.DataFrame(
        {"video_id": ["vA", "vB"], "frame_index": [0, 0], "timestamp_s": [0.0, 0.0],
         "face_x0": [0, 0], "face_y0": [0, 0], "face_x1": [99, 99], "face_y1": [99, 49]}
    )  # fmt: skip
    truth_frames.to_csv(truth_dir / "frames.tsv", sep="\t", index=False)
    (tmp_path / "frames").mkdir()
    _write_frames(tmp_path / "frames" / "s000.h5", "vA", (100, 100), (40, 64), 2)
    _write_frames(tmp_path / "frames" / "s001.h5", "vB", (100, 50), (48, 48), 1)
    qc = pd.DataFrame(
        {"video_id": ["vA", "vB"], "status": "ok", "width": [100, 100], "height": [100, 50]}
    )
    qc.to_csv(tmp_path / "videos.tsv", sep="\t", index=False)
    _write_cam(tmp_path / "img.h5", CAM_KEYS, _cam_maps())
    grad = np.zeros((3, 5, 40, 64), dtype=np.float32)
    grad[:, :, :, 30:34] = 1.0  # on the face in s000; in s001 columns ~22..26 of 48, all rows
    _write_cam(tmp_path / "img_gradcam.h5", CAM_KEYS, grad)
    detectors = pd.DataFrame(
        {"layer": "conv5_3", "unit": [0, 0, 1, 2, 3, 4], "region": ["eyes", "nose", "mouth",
         "nose", "eyebrows", "mouth"], "score": 0.6, "iou": 0.01,
         "histogram_detector": [True, False, True, True, False, False],
         "netdissect_detector": False}
    )  # fmt: skip
    detectors.to_csv(tmp_path / "detectors.tsv", sep="\t", index=False)
    emergence = pd.DataFrame(
        {"au": ["AU01", "AU02", "AU04", "AU12", "AU26", "AU45"],
         "unit": [5, 5, 9, 2, -1, 7], "layer": ["conv5_3"] * 4 + ["", "conv4_3"],
         "i_max": [40, 30, 5, 8, 0, 60], "n": 100, "f": 4000, "u": 256,
         "p": [1e-10, 1e-3, 0.3, 0.1, 1.0, 0.0],
         "log10_p": [-10.0, -3.0, -0.52, -1.0, 0.0, -400.0]}
    )  # fmt: skip
    emergence.to_csv(tmp_path / "au_emergence.tsv", sep="\t", index=False, na_rep="")
    null = pd.DataFrame(
        {"au": ["AU01", "all"], "n_permutations": [200, 1200], "false_positive_rate": [0.0, 0.004]}
    )
    null.to_csv(tmp_path / "au_emergence_null.tsv", sep="\t", index=False)
    return tmp_path


def _geometry_and_sizes(demo: Path):
    geometry = read_frame_geometry([demo / "frames" / "s000.h5", demo / "frames" / "s001.h5"])
    sizes = pd.read_csv(demo / "videos.tsv", sep="\t")
    truth_frames = pd.read_csv(demo / "ground_truth" / "frames.tsv", sep="\t")
    return geometry, sizes, truth_frames


def test_geometry_and_true_boxes_per_frame(demo):
    geometry, sizes, truth_frames = _geometry_and_sizes(demo)
    assert geometry.set_index("video_id").loc["vB"].tolist() == [0, 12, 48, 24, 48, 48]
    keys = pd.DataFrame({"video_id": ["vA", "vA", "vB"], "frame_index": [0, 1, 0]})
    boxes, heights, widths = true_stored_boxes(keys, truth_frames, geometry, sizes)
    np.testing.assert_allclose(boxes[0], [11.7, -0.3, 51.3, 39.3])
    assert np.isnan(boxes[1]).all()  # no truth for vA frame 1
    np.testing.assert_allclose(boxes[2], [-0.26, 11.74, 47.26, 35.26])
    assert heights.tolist() == [40, 40, 48] and widths.tolist() == [64, 64, 48]
    with pytest.raises(UserError, match="not in the video sizes"):
        true_stored_boxes(keys, truth_frames, geometry, sizes[sizes["video_id"] == "vA"])


def test_cam_share_on_maps_with_known_overlaps(demo):
    geometry, sizes, truth_frames = _geometry_and_sizes(demo)
    # scored: vA/0 -> 1, 0, 0.5, (empty), 1; vB/0 -> 0.5 x 5 (half of the frame is box)
    result = cam_true_face_overlap(demo / "img.h5", truth_frames, geometry, sizes, 0.2, 0.9)
    assert result["n_maps"] == 15 and result["n_scored"] == 9
    assert result["n_empty"] == 1 and result["n_no_truth"] == 5
    assert result["share"] == pytest.approx(2 / 9)
    assert result["median_overlap"] == pytest.approx(0.5)
    lower = cam_true_face_overlap(demo / "img.h5", truth_frames, geometry, sizes, 0.2, 0.5)
    assert lower["share"] == pytest.approx(8 / 9)


def test_detector_precision_with_and_without_detectors():
    table = pd.DataFrame(
        {"region": ["eyes", "nose", "mouth", "nose", "skin"],
         "histogram_detector": ["true", "false", "true", "true", "false"],
         "netdissect_detector": [False] * 5}
    )  # fmt: skip
    hist = detector_precision(table, REGIONS, "histogram_detector")
    assert hist["precision"] == pytest.approx(2 / 3) and hist["n"] == 3
    assert hist["by_region"] == {"eyes": 1, "mouth": 1, "nose": 1}
    none = detector_precision(table, REGIONS, "netdissect_detector")
    assert math.isnan(none["precision"]) and none["n"] == 0
    table["netdissect_detector"] = [False, False, False, False, True]
    unknown = detector_precision(table, REGIONS, "netdissect_detector")
    assert unknown["precision"] == 0.0 and unknown["unknown_regions"] == ["skin"]


def test_au_significance_maps_au43_and_reads_log10_p(demo):
    emergence = pd.read_csv(demo / "au_emergence.tsv", sep="\t")
    sig = au_significance(emergence, ["AU01", "AU12", "AU45"], alpha=0.01)
    # AU45 (= the truth's AU43) has p printed as 0: its log10_p decides
    assert sig["planted_significant"] == ["AU01", "AU45"]
    assert sig["planted_share"] == pytest.approx(2 / 3)
    assert sig["unplanted"] == ["AU02", "AU04", "AU26"]
    assert sig["unplanted_significant"] == ["AU02"]
    assert sig["unplanted_share"] == pytest.approx(1 / 3)
    assert sig["unplanted_sharing_planted_unit"] == ["AU02"]  # same unit as AU01
    strict = au_significance(emergence, ["AU01", "AU12", "AU45"], alpha=1e-12)
    assert strict["planted_significant"] == ["AU45"] and strict["unplanted_share"] == 0.0


def _run_entry(demo: Path) -> tuple[dict, pd.DataFrame]:
    inputs = {
        "ground_truth": str(demo / "ground_truth"),
        "qc": str(demo / "videos.tsv"),
        "frames": [str(demo / "frames" / "s000.h5"), str(demo / "frames" / "s001.h5")],
        "cam": str(demo / "img.h5"),
        "gradcam": str(demo / "img_gradcam.h5"),
        "detectors": str(demo / "detectors.tsv"),
        "emergence": str(demo / "au_emergence.tsv"),
        "null": str(demo / "au_emergence_null.tsv"),
    }
    out = demo / "out"
    sm = type("Snakemake", (), {})()
    sm.input = Namedlist(fromdict=inputs)
    sm.output = Namedlist(
        fromdict={"json": str(out / "planted.json"), "table": str(out / "planted.tsv")}
    )
    sm.params = Namedlist(fromdict={"threshold": 0.2, "min_overlap": 0.9, "alpha": 0.01})
    sm.log = [str(demo / "validate_planted.log")]
    runpy.run_path(str(ENTRY), init_globals={"snakemake": sm}, run_name="__main__")
    text = (out / "planted.json").read_text()
    return json.loads(text), pd.read_csv(out / "planted.tsv", sep="\t")


def test_entry_writes_the_contract_json_and_the_report_table(demo):
    doc, table = _run_entry(demo)
    assert list(doc)[:5] == list(CONTRACT_KEYS)
    assert doc["cam_true_face_overlap_share"] == pytest.approx(2 / 9)
    assert doc["detector_precision"] == pytest.approx(2 / 3)  # eyes, mouth of eyes, mouth, nose
    assert doc["n_detectors"] == 3
    assert doc["detector_precision_netdissect"] is None  # no detector: NaN -> null
    assert doc["n_detectors_netdissect"] == 0
    assert doc["detector_precision_chance"] == pytest.approx(0.75)
    assert doc["planted_aus"] == ["AU01", "AU12", "AU45"]
    assert doc["planted_aus_significant_share"] == pytest.approx(2 / 3)
    assert doc["unplanted_aus_significant_share"] == pytest.approx(1 / 3)
    assert doc["null_false_positive_rate"] == pytest.approx(0.004)
    # Grad-CAM: s000 columns 30..33 all inside the box (1.0); in s001's 48 x 48 frame the
    # stripe covers every row, rows 12..35 of 48 are the box: 0.5
    assert doc["gradcam_true_face_overlap_share"] == pytest.approx(5 / 10)
    goals = doc["goals"]
    assert goals["cam_true_face_overlap_share"] == {
        "op": ">=", "value": 0.9, "goal": ">= 0.9", "met": False,
    }  # fmt: skip
    assert goals["null_false_positive_rate"]["met"] is True
    assert goals["detector_precision_netdissect"]["met"] is None
    assert any("Network Dissection" in note for note in doc["notes"])
    assert any("cross-talk" in note for note in doc["notes"])
    assert list(table.columns) == ["check", "value", "goal", "met", "note"]
    row = table.set_index("check").loc["null_false_positive_rate"]
    assert row["value"] == pytest.approx(0.004) and row["goal"] == "<= 0.05"
    assert str(row["met"]).lower() == "true"
    assert math.isnan(table.set_index("check").loc["detector_precision_netdissect", "value"])
    assert "NaN" not in (demo / "out" / "planted.json").read_text()


def test_entry_refuses_a_foreign_truth(demo):
    (demo / "ground_truth" / "planted.json").write_text(json.dumps({"seed": 1}))
    with pytest.raises(SystemExit):
        _run_entry(demo)
    assert "not the demo's planted.json" in (demo / "validate_planted.log").read_text()


def test_json_ready_turns_nan_into_null():
    doc = {"a": float("nan"), "b": [np.float32(0.5), np.int64(3)], "c": {"d": float("inf")}}
    assert json.dumps(json_ready(doc)) == '{"a": null, "b": [0.5, 3], "c": {"d": null}}'


def test_goals_are_scored():
    cam = {"share": 0.8, "n_maps": 5, "n_scored": 5, "n_empty": 0, "n_no_truth": 0,
           "median_overlap": 0.9, "peak_in_face_share": 1.0, "ideal_share": 0.5,
           "ideal_median_overlap": 0.85}  # fmt: skip
    detectors = pd.DataFrame(
        {"region": ["eyes"], "histogram_detector": [True], "netdissect_detector": [True]}
    )
    emergence = pd.DataFrame({"au": ["AU01"], "unit": [1], "layer": ["l"], "p": [0.5]})
    null = pd.DataFrame({"au": ["all"], "false_positive_rate": [0.01]})
    args = (TRUTH, cam, cam, detectors, emergence, null, 0.2, 0.9, 0.01)
    doc = score_planted(*args)
    assert doc["goals"]["cam_true_face_overlap_share"]["met"] is False  # 0.8 < 0.9
    assert doc["goals"]["null_false_positive_rate"]["met"] is True  # 0.01 <= 0.05
    assert doc["detector_precision"] == 1.0
    assert math.isnan(doc["unplanted_aus_significant_share"])  # no unplanted AU in the table


def test_pointing_game_uses_the_peak_cell_centre():
    from traitlens.demo.planted import peak_in_box

    maps = np.zeros((2, 1, 4, 4), np.float32)
    maps[0, 0, 1, 2] = 1.0  # cell centre at x = 2.5 * 100 / 4 - 0.5 = 62, y = 1.5 * 25 - 0.5 = 37
    maps[1, 0, 3, 0] = 1.0  # x = 12, y = 87
    boxes = np.array([[60, 30, 70, 40], [60, 30, 70, 40]], float)
    sizes = np.array([100, 100])
    assert peak_in_box(maps, boxes, sizes, sizes)[:, 0].tolist() == [True, False]


def test_box_coverage_maps_are_the_ceiling_of_the_overlap():
    from traitlens.demo.planted import box_coverage_maps
    from traitlens.interpret.cam_face_overlap import frame_overlaps

    # a box exactly on cells (1..2, 1..2) of a 4 x 4 grid over 100 x 100 pixels
    boxes = np.array([[25, 25, 74, 74]], float)
    cover = box_coverage_maps(boxes, 100, 100, (4, 4))[0, 0]
    expected = np.zeros((4, 4))
    expected[1:3, 1:3] = 1.0
    np.testing.assert_allclose(cover, expected, atol=1e-9)
    # upsampled and binarised at 20% of its max the ideal map still spills over the box
    ideal = frame_overlaps(cover[None, None], boxes, 100, 100, 0.2)[0, 0]
    assert 0.5 < ideal < 0.9
    # a map on the box only, at full resolution, would overlap completely
    full = np.zeros((1, 1, 100, 100), np.float32)
    full[0, 0, 25:75, 25:75] = 1
    assert frame_overlaps(full, boxes, 100, 100, 0.2)[0, 0] == pytest.approx(1.0)
