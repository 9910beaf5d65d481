"""Scoring against the planted truth: true boxes through the content box, the CAM share
on known maps and its controls (the ideal map, the maps moved off the face), detector
precision and its interval, the detectors' correlation with their region's AU, AU
significance (verdict, decoys, coupled AUs), the goals, and the JSON/TSV of the entry."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from snakemake.iocontainers import Namedlist

from traitlens.core.errors import UserError
from traitlens.demo.planted import (
    CONTRACT_KEYS,
    GOALS,
    au_significance,
    cam_true_face_overlap,
    coupled_aus,
    detector_au_correlations,
    detector_precision,
    ideal_maps,
    json_ready,
    map_boxes,
    read_frame_geometry,
    read_truth_frames,
    score_planted,
    stored_boxes,
    true_stored_boxes,
    truth_in_verdict_family,
)
from traitlens.extract.frame_decode import content_box
from traitlens.interpret.cam_face_overlap import frame_overlaps
from traitlens.interpret.emergence_stats import benjamini_hochberg

from support.activation_dumps import write_dump
from support.planted_demo import (
    AUS,
    REGIONS,
    SIGNAL,
    TRUTH,
    control_demo,
    faces_in_frames,
    write_cam,
    write_frames,
)

ENTRY = Path(__file__).resolve().parents[1] / "workflow_scripts" / "validate_planted.py"


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
# Videos v0..v2 (10 frames each) are the activation dump's (tests/support/activation_dumps).


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


def _region_boxes(video_h: int) -> dict[str, list[float]]:
    """Boxes of the signal regions inside a 100-wide face spanning the video's height."""
    s = video_h / 100
    return {
        "eyebrows": [20, 20 * s, 79, 29 * s],
        "eyes": [20, 30 * s, 79, 44 * s],
        "mouth": [30, 65 * s, 69, 79 * s],
    }


def _truth_frames(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for video, frame, video_h in [("vA", 0, 100), ("vB", 0, 50)] + [
        (f"v{v}", i, 100) for v in range(3) for i in range(10)
    ]:
        row = {"video_id": video, "frame_index": frame, "timestamp_s": 0.0,
               "face_x0": 0, "face_y0": 0, "face_x1": 99, "face_y1": video_h - 1}  # fmt: skip
        for region, box in _region_boxes(video_h).items():
            row.update(zip([f"{region}_{c}" for c in ("x0", "y0", "x1", "y1")], box, strict=True))
        row.update({au: 0.0 if video in ("vA", "vB") else rng.uniform(0, 1) for au in AUS})
        rows.append(row)
    return pd.DataFrame(rows)


def _dump_maps(truth: pd.DataFrame) -> np.ndarray:
    """30 frames x 5 units of 4 x 4 maps: unit 0's peak follows AU43, unit 1's AU26, the
    others are noise (frames as write_dump keys them: video v<i // 10>, frame i % 10)."""
    rng = np.random.default_rng(11)
    au = truth[truth["video_id"].str.match(r"v\d")].reset_index(drop=True)
    maps = rng.uniform(0, 0.1, (30, 5, 4, 4)).astype(np.float32)
    maps[:, 0, 1, 1] = 1 + au["AU43"].to_numpy()
    maps[:, 1, 3, 2] = 1 + au["AU26"].to_numpy()
    maps[:, 2, 2, 2] = 1 + rng.uniform(0, 1, 30)
    return maps


@pytest.fixture
def demo(tmp_path):
    """The files of a tiny demo run (see the comment above) and the answers."""
    truth_dir = tmp_path / "ground_truth"
    truth_dir.mkdir()
    (truth_dir / "planted.json").write_text(json.dumps(TRUTH))
    truth_frames = _truth_frames(np.random.default_rng(2))
    truth_frames.to_csv(truth_dir / "frames.tsv", sep="\t", index=False)
    (tmp_path / "frames").mkdir()
    write_frames(tmp_path / "frames" / "s000.h5", "vA", (100, 100), (40, 64), 2)
    write_frames(tmp_path / "frames" / "s001.h5", "vB", (100, 50), (48, 48), 1)
    qc = pd.DataFrame(
        {"video_id": ["vA", "vB"], "status": "ok", "width": [100, 100], "height": [100, 50]}
    )
    qc.to_csv(tmp_path / "videos.tsv", sep="\t", index=False)
    write_cam(tmp_path / "img.h5", CAM_KEYS, _cam_maps())
    grad = np.zeros((3, 5, 40, 64), dtype=np.float32)
    grad[:, :, :, 30:34] = 1.0  # on the face in s000; in s001 columns ~22..26 of 48, all rows
    write_cam(tmp_path / "img_gradcam.h5", CAM_KEYS, grad)
    off = np.zeros((3, 5, 40, 64), dtype=np.float32)
    off[:, :, :, 0:6] = 1.0  # an untrained network's maps, here all on s000's padding
    write_cam(tmp_path / "img_random_init.h5", CAM_KEYS, off)
    detectors = pd.DataFrame(
        {"layer": "conv5_3", "unit": [0, 0, 1, 2, 3, 4], "region": ["eyes", "nose", "mouth",
         "nose", "eyebrows", "mouth"], "score": 0.6, "iou": 0.01,
         "histogram_detector": [True, False, True, True, False, False],
         "netdissect_detector": False}
    )  # fmt: skip
    detectors.to_csv(tmp_path / "detectors.tsv", sep="\t", index=False)
    detectors.assign(histogram_detector=[False, False, False, True, False, False]).to_csv(
        tmp_path / "detectors_random_init.tsv", sep="\t", index=False
    )
    emergence = pd.DataFrame(
        {"au": ["AU01", "AU02", "AU04", "AU12", "AU26", "AU45"],
         "unit": [5, 5, 9, 2, -1, 7], "layer": ["conv5_3"] * 4 + ["", "conv4_3"],
         "i_max": [40, 30, 5, 8, 0, 60], "n": 100, "f": 4000, "u": 256,
         "p": [1e-10, 1e-3, 0.3, 0.1, 1.0, 0.0],
         "log10_p": [-10.0, -3.0, -0.52, -1.0, 0.0, -400.0], "expected_overlap": 2.5}
    )  # fmt: skip
    emergence.to_csv(tmp_path / "au_emergence.tsv", sep="\t", index=False, na_rep="")
    emergence.assign(i_max=3, p=0.5, log10_p=-0.3).to_csv(
        tmp_path / "au_emergence_random_init.tsv", sep="\t", index=False, na_rep=""
    )
    null = pd.DataFrame(
        {
            "au": ["AU01", "all"],
            "n_permutations": [200, 1200],
            "false_positive_rate": [0.0, 0.03],
            "cluster_false_positive_rate": [0.0, 0.004],
        }  # fmt: skip
    )
    null.to_csv(tmp_path / "au_emergence_null.tsv", sep="\t", index=False)
    validation = pd.DataFrame(
        {"au": ["AU01", "AU02", "AU04", "AU43"], "planted": [True, False, False, True],
         "cross_talk_r": [0.1, 0.5, 0.1, 0.2]}
    )  # fmt: skip
    validation.to_csv(tmp_path / "aus.tsv", sep="\t", index=False)
    ceilings = pd.DataFrame(
        {"layer": "conv5_3", "map_height": 8, "map_width": 8, "region": list(REGIONS),
         "ceiling": [0.31, 0.35, 0.66, 0.55], "reachable": [False, False, True, True]}
    )  # fmt: skip
    ceilings.to_csv(tmp_path / "detector_ceilings.tsv", sep="\t", index=False)
    write_dump(tmp_path / "conv5_3.h5", _dump_maps(truth_frames), "conv5_3")
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
    # the region boxes go through the same content box: vA's eyes, columns 20..79 of 100
    regions, _, _ = stored_boxes(keys, truth_frames, geometry, sizes, SIGNAL)
    np.testing.assert_allclose(regions["eyes"][0], map_boxes([[20, 30, 79, 44]], 100, 100,
                                                             (12, 0, 40, 40))[0])  # fmt: skip
    np.testing.assert_allclose(regions["face"], boxes)
    with pytest.raises(UserError, match="not in the video sizes"):
        true_stored_boxes(keys, truth_frames, geometry, sizes[sizes["video_id"] == "vA"])


def test_truth_without_region_boxes_is_refused_naming_frames_tsv(demo):
    path = demo / "ground_truth" / "frames.tsv"
    assert "eyes_x0" in read_truth_frames(path, SIGNAL)  # the control: the full truth reads
    table = pd.read_csv(path, sep="\t")
    table.drop(columns=[c for c in table if c.startswith("eyes_")]).to_csv(
        path, sep="\t", index=False
    )
    read_truth_frames(path)  # without regions asked for, the old truth still reads
    with pytest.raises(UserError, match=r"frames\.tsv: no boxes of the regions.*eyes_x0"):
        read_truth_frames(path, SIGNAL)


def test_cam_share_on_maps_with_known_overlaps(demo):
    geometry, sizes, truth_frames = _geometry_and_sizes(demo)
    # scored: vA/0 -> 1, 0, 0.5, (empty), 1; vB/0 -> 0.5 x 5 (half of the frame is box)
    result = cam_true_face_overlap(demo / "img.h5", truth_frames, geometry, sizes, 0.2, 0.9)
    assert result["n_maps"] == 15 and result["n_scored"] == 9
    assert result["n_empty"] == 1 and result["n_no_truth"] == 5
    assert result["share"] == pytest.approx(2 / 9)
    assert result["median_overlap"] == pytest.approx(0.5)
    # Zhou's box: vA/0's stripes are whole columns, so their box is the stripe (all rows,
    # the face box spans them): 1, 0, 0.5 (columns 6..17: 6 of 12 inside), 1; vB/0: the
    # whole frame, of which rows 12..35 are the face: 0.5
    assert result["region_share"] == pytest.approx(2 / 9)
    lower = cam_true_face_overlap(demo / "img.h5", truth_frames, geometry, sizes, 0.2, 0.5)
    assert lower["share"] == pytest.approx(8 / 9)
    assert "ideal_share" not in lower  # controls only when asked for


# --- the CAM controls --------------------------------------------------------------------


def test_ideal_map_is_the_area_average_of_the_union():
    # two overlapping boxes on a 4 x 4 grid over 8 x 8 pixels: cells of 2 x 2 pixels
    a = np.array([[0, 0, 3, 1]], float)  # rows 0..1, columns 0..3: cells (0, 0), (0, 1)
    b = np.array([[2, 0, 3, 3]], float)  # rows 0..3, columns 2..3: cells (0, 1), (1, 1)
    m = ideal_maps([a, b], 8, 8, (4, 4))[0, 0]
    expected = np.zeros((4, 4))
    expected[0, :2] = 1.0
    expected[1, 1] = 1.0
    np.testing.assert_allclose(m, expected)  # the union, not the sum
    half = ideal_maps([np.array([[0, 0, 0, 1]], float)], 8, 8, (4, 4))[0, 0]
    assert half[0, 0] == pytest.approx(0.5) and half.sum() == pytest.approx(0.5)
    assert not ideal_maps([np.full((1, 4), np.nan)], 8, 8, (4, 4)).any()  # no box: nothing


def test_ideal_map_reaches_the_goal_at_12x12_but_not_at_4x4():
    face, regions = faces_in_frames(40)
    fine = frame_overlaps(ideal_maps(regions, 108, 192, (12, 12)), face, 108, 192, 0.2)
    coarse = frame_overlaps(ideal_maps(regions, 108, 192, (4, 4)), face, 108, 192, 0.2)
    assert np.mean(fine >= 0.9) >= GOALS["cam_ideal_overlap_share"][1]
    assert np.mean(coarse >= 0.9) < 0.5


def test_a_map_on_the_face_passes_and_the_same_map_moved_off_it_fails(tmp_path):
    args = control_demo(tmp_path, (12, 12))
    got = cam_true_face_overlap(*args, 0.2, 0.9, SIGNAL, controls=True)
    assert got["share"] >= 0.95 and got["ideal_share"] >= 0.95  # the maps are the ideal ones
    # Zhou's box is a rectangle around the blob: it spills over the face box by up to a
    # cell more often than the blob's pixels do (at 12x12, 23 of 30 frames reach 0.9)
    assert got["peak_in_face_share"] == 1.0 and got["region_share"] >= 0.7
    assert got["offface_share"] <= GOALS["cam_offface_overlap_share"][1]
    assert got["offface_region_share"] <= 0.2
    # mirrored left-right, the maps stay on the face when it is near the middle: no control
    assert got["mirrored_share"] > got["offface_share"]
    # the same frames at 4 x 4: the ideal map itself falls short (the resolution's limit)
    coarse = cam_true_face_overlap(*control_demo(tmp_path, (4, 4)), 0.2, 0.9, SIGNAL, True)
    assert coarse["ideal_share"] < 0.5


def test_a_map_in_the_corner_fails_and_its_roll_lands_on_the_face(tmp_path):
    # the negative control's own control: a map off the face scores 0, rolled it lands on
    # the frame's centre, where the (centred) face is
    args = control_demo(tmp_path, (12, 12), maps_from_truth=False, jitter=0.0)
    got = cam_true_face_overlap(*args, 0.2, 0.9, SIGNAL, controls=True)
    assert got["share"] == 0.0 and got["peak_in_face_share"] == 0.0
    assert got["region_share"] == 0.0 and got["mirrored_share"] == 0.0
    assert got["offface_share"] == 1.0
    assert got["ideal_share"] >= 0.95  # the ideal map depends on the truth only


# --- detectors ------------------------------------------------------------------------------


def test_detector_precision_with_and_without_detectors():
    table = pd.DataFrame(
        {"region": ["eyes", "nose", "mouth", "nose", "skin"],
         "histogram_detector": ["true", "false", "true", "true", "false"],
         "netdissect_detector": [False] * 5}
    )  # fmt: skip
    hist = detector_precision(table, REGIONS, "histogram_detector")
    assert hist["precision"] == pytest.approx(2 / 3) and hist["n"] == 3
    assert hist["ci_low"] == pytest.approx(0.2077, abs=1e-4)  # Wilson 2/3
    assert hist["ci_high"] == pytest.approx(0.9385, abs=1e-4)
    assert hist["by_region"] == {"eyes": 1, "mouth": 1, "nose": 1}
    none = detector_precision(table, REGIONS, "netdissect_detector")
    assert math.isnan(none["precision"]) and none["n"] == 0 and math.isnan(none["ci_low"])
    table["netdissect_detector"] = [False, False, False, False, True]
    unknown = detector_precision(table, REGIONS, "netdissect_detector")
    assert unknown["precision"] == 0.0 and unknown["unknown_regions"] == ["skin"]


def _r_demo(tmp_path: Path, n_videos: int = 30, shuffle: bool = False):
    """Dump of n_videos x 10 frames: unit 0's max = AU01 + noise (an eyebrow detector),
    unit 1's = 2 AU26 + noise (mouth), unit 2 noise (nose); ``shuffle``: unit 0's
    activations permuted over the frames."""
    rng = np.random.default_rng(4)
    n = n_videos * 10
    truth = pd.DataFrame(
        {"video_id": [f"v{i // 10}" for i in range(n)], "frame_index": np.arange(n) % 10,
         **{au: rng.uniform(0, 1, n) for au in AUS}}
    )  # fmt: skip
    maps = rng.uniform(0, 0.05, (n, 3, 2, 2)).astype(np.float32)
    maps[:, 0, 0, 0] = 1 + truth["AU01"] + rng.normal(0, 0.1, n)
    maps[:, 1, 1, 1] = 1 + 2 * truth["AU26"] + rng.normal(0, 0.1, n)
    maps[:, 2, 1, 0] = 1 + rng.uniform(0, 1, n)
    if shuffle:
        maps[:, 0] = maps[rng.permutation(n), 0]
    write_dump(tmp_path / "conv4_3.h5", maps, "conv4_3")
    detectors = pd.DataFrame(
        {"layer": "conv4_3", "unit": [0, 1, 2], "region": ["eyebrows", "mouth", "nose"],
         "score": [0.7, 0.6, 0.8], "histogram_detector": True}
    )  # fmt: skip
    return detectors, [tmp_path / "conv4_3.h5"], truth


def test_detector_correlation_recovers_the_planted_au_and_not_a_shuffle(tmp_path):
    detectors, dumps, truth = _r_demo(tmp_path)
    table = detector_au_correlations(detectors, dumps, truth, TRUTH).set_index("unit")
    assert table.loc[0, "au"] == "AU01" and table.loc[0, "r"] > 0.9
    assert table.loc[0, "r_within_video"] > 0.9  # frame by frame, not only per video
    assert abs(table.loc[0, "r_AU12"]) < 0.2  # the other regions' AUs: no correlation
    # the mouth: both of its AUs reported, the larger one kept
    assert table.loc[1, "au"] == "AU26" and table.loc[1, "r"] > 0.9
    assert abs(table.loc[1, "r_AU12"]) < 0.2
    assert table.loc[2, "au"] == "" and math.isnan(table.loc[2, "r"])  # the nose: none
    assert (table["n_frames"] == 300).all() and (table["n_videos"] == 30).all()
    shuffled = detector_au_correlations(*_r_demo(tmp_path, shuffle=True)[:2], truth, TRUTH)
    assert abs(shuffled.set_index("unit").loc[0, "r"]) < 0.2


def test_detector_correlation_needs_the_dumps_of_the_tables_layers(tmp_path):
    detectors, dumps, truth = _r_demo(tmp_path, n_videos=2)
    with pytest.raises(UserError, match=r"no dump of layer\(s\) \['conv5_3'\]"):
        detector_au_correlations(detectors.assign(layer="conv5_3"), dumps, truth, TRUTH)
    write_dump(tmp_path / "img.h5", np.ones((20, 3, 2, 2), np.float32), "conv4_3", kind="img")
    with pytest.raises(UserError, match="face model's dumps"):
        detector_au_correlations(detectors, [tmp_path / "img.h5"], truth, TRUTH)
    none = detector_au_correlations(detectors.assign(histogram_detector=False), dumps, truth, TRUTH)
    assert none.empty and "r_AU01" in none.columns


# --- AU emergence ------------------------------------------------------------------------


def test_au_significance_maps_au43_and_reads_log10_p(demo):
    emergence = pd.read_csv(demo / "au_emergence.tsv", sep="\t")
    sig = au_significance(emergence, ["AU01", "AU12", "AU45"], alpha=0.01)
    assert sig["fallback"]  # no 'significant' column: p < alpha
    # AU45 (= the truth's AU43) has p printed as 0: its log10_p decides
    assert sig["planted_significant"] == ["AU01", "AU45"]
    assert sig["planted_share"] == pytest.approx(2 / 3)
    assert sig["unplanted"] == ["AU02", "AU04", "AU26"]
    assert sig["unplanted_significant"] == ["AU02"]
    assert sig["unplanted_share"] == pytest.approx(1 / 3)
    assert sig["unplanted_sharing_planted_unit"] == ["AU02"]  # same unit as AU01
    assert sig["i_max"]["AU01"] == (40, 2.5)
    strict = au_significance(emergence, ["AU01", "AU12", "AU45"], alpha=1e-12)
    assert strict["planted_significant"] == ["AU45"] and strict["unplanted_share"] == 0.0


def _verdict_table() -> pd.DataFrame:
    """Planted AU01, AU12, AU45 (+ their decoys), unplanted AU02, AU06, AU25: the
    verdict (q) differs from the paper's p < alpha for AU02 and AU06."""
    return pd.DataFrame(
        {"au": ["AU01", "AU12", "AU45", "AU02", "AU06", "AU25",
                "AU01_decoy", "AU12_decoy", "AU43_decoy", "AU02_decoy"],
         "unit": [1, 2, 3, 4, 8, 2, 6, 7, 8, 9], "layer": "l", "i_max": 10,
         "p": [1e-9, 1e-6, 1e-8, 1e-3, 1e-3, 1e-7, 0.5, 0.003, 0.4, 1e-9],
         "significant": [True, True, True, False, False, True, False, True, False, True]}
    )  # fmt: skip


def test_the_verdict_decoys_and_coupled_aus_are_scored_apart():
    table = _verdict_table()
    planted = ["AU01", "AU12", "AU45"]
    sig = au_significance(table, planted, alpha=0.01, coupled=["AU06", "AU25"])
    assert not sig["fallback"] and sig["planted_share"] == 1.0
    assert sig["unplanted"] == ["AU02"] and sig["unplanted_share"] == 0.0  # q says no
    assert sig["paper_unplanted_share"] == 1.0  # p = 0.001 < 0.01: the paper says yes
    assert sig["coupled"] == ["AU06", "AU25"] and sig["coupled_share"] == 0.5
    # the truth's AU43 decoy is AU45's; AU02's decoy is not a planted AU's
    assert sig["decoys"] == ["AU01_decoy", "AU12_decoy", "AU45_decoy"]
    assert sig["decoy_share"] == pytest.approx(1 / 3)
    assert sig["unplanted_sharing_planted_unit"] == ["AU25"]  # AU12's unit
    # without the coupling the same AUs count as unplanted: the share rises
    loose = au_significance(table, planted, alpha=0.01)
    assert loose["unplanted_share"] == pytest.approx(1 / 3) and loose["coupled"] == []
    # a table written without videos has no verdict (q_bh empty): p < alpha decides
    empty = au_significance(table.assign(q_bh=np.nan, significant=False), planted, alpha=0.01)
    assert empty["fallback"] and empty["planted_share"] == 1.0


def test_coupling_is_read_from_the_au_validation_table():
    validation = pd.DataFrame(
        {"au": ["AU06", "AU25", "AU02", "AU43"], "cross_talk_r": [0.44, -0.6, 0.1, 0.9]}
    )
    coupled, missing = coupled_aus(validation, ["AU02", "AU06", "AU25", "AU20"], 0.3)
    assert coupled == ["AU06", "AU25"] and missing == ["AU20"]  # |r|: a negative r couples too
    assert coupled_aus(validation, ["AU02", "AU06", "AU25"], 0.5)[0] == ["AU25"]
    assert coupled_aus(None, ["AU02"], 0.3) == ([], [])


# --- the entry -------------------------------------------------------------------------------


def _run_entry(demo: Path, optional: bool = False) -> tuple[dict, pd.DataFrame]:
    inputs = {
        "ground_truth": str(demo / "ground_truth"),
        "qc": str(demo / "videos.tsv"),
        "frames": [str(demo / "frames" / "s000.h5"), str(demo / "frames" / "s001.h5")],
        "cam": str(demo / "img.h5"),
        "gradcam": str(demo / "img_gradcam.h5"),
        "detectors": str(demo / "detectors.tsv"),
        "emergence": str(demo / "au_emergence.tsv"),
        "null": str(demo / "au_emergence_null.tsv"),
        "aus_validation": str(demo / "aus.tsv"),
        "ceilings": str(demo / "detector_ceilings.tsv"),
        "dumps": [str(demo / "conv5_3.h5")],
    }
    if optional:
        inputs.update(
            cam_random=str(demo / "img_random_init.h5"),
            detectors_random=str(demo / "detectors_random_init.tsv"),
            emergence_random=str(demo / "au_emergence_random_init.tsv"),
            emergence_truth=str(demo / "au_emergence.tsv"),
        )
    out = demo / "out"
    sm = type("Snakemake", (), {})()
    sm.input = Namedlist(fromdict=inputs)
    sm.output = Namedlist(
        fromdict={"json": str(out / "planted.json"), "table": str(out / "planted.tsv"),
                  "detectors": str(out / "planted_detectors.tsv")}
    )  # fmt: skip
    sm.params = Namedlist(
        fromdict={"threshold": 0.2, "min_overlap": 0.9, "alpha": 0.01, "coupling_r": 0.3}
    )
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
    assert doc["detector_precision_ci_low"] == pytest.approx(0.2077, abs=1e-4)
    assert doc["detector_precision_netdissect"] is None  # no detector: NaN -> null
    assert doc["n_detectors_netdissect"] == 0
    assert doc["detector_precision_chance"] == pytest.approx(0.75)
    assert doc["planted_aus"] == ["AU01", "AU12", "AU26", "AU45"]
    assert doc["planted_aus_significant_share"] == pytest.approx(2 / 4)
    # AU02 follows a planted AU (cross-talk 0.5 >= 0.3): coupled, scored apart
    assert doc["coupled_aus"] == ["AU02"] and doc["coupled_aus_significant_share"] == 1.0
    assert doc["unplanted_aus"] == ["AU04"] and doc["unplanted_aus_significant_share"] == 0.0
    assert doc["paper_unplanted_aus_significant_share"] == 0.0
    assert doc["null_false_positive_rate"] == pytest.approx(0.004)  # the verdict's null
    assert doc["paper_null_false_positive_rate"] == pytest.approx(0.03)
    # Grad-CAM: s000 columns 30..33 all inside the box (1.0); in s001's 48 x 48 frame the
    # stripe covers every row, rows 12..35 of 48 are the box: 0.5
    assert doc["gradcam_true_face_overlap_share"] == pytest.approx(5 / 10)
    for key in ("cam_ideal_overlap_share", "cam_offface_overlap_share",
                "cam_mirrored_overlap_share", "cam_true_face_region_share"):  # fmt: skip
        assert 0 <= doc[key] <= 1, key
    # without the optional inputs their keys are null, their goals not measured
    for key in ("cam_random_weights_overlap_share", "n_detectors_random_init",
                "random_init_planted_aus_significant_share",
                "truth_planted_aus_significant_share", "decoy_aus_significant_share"):  # fmt: skip
        assert doc[key] is None, key
    goals = doc["goals"]
    assert goals["cam_random_weights_overlap_share"]["met"] is None
    assert goals["n_detectors_random_init"]["met"] is None
    assert goals["decoy_aus_significant_share"]["met"] is None
    assert any("no input cam_random" in note for note in doc["notes"])
    assert any("no decoy rows" in note for note in doc["notes"])
    assert any("no 'significant' column" in note for note in doc["notes"])
    assert goals["cam_true_face_overlap_share"] == {
        "op": ">=", "value": 0.7, "goal": ">= 0.7", "met": False,
    }  # fmt: skip
    assert goals["n_detectors"]["met"] is False  # 3 < 10
    assert goals["null_false_positive_rate"] == {
        "op": "in", "value": [0.0, 0.02], "goal": "in [0, 0.02]", "met": True,
    }  # fmt: skip
    assert any("Network Dissection" in note for note in doc["notes"])
    # the ceilings: at 8x8 no eyebrow or eye detector is possible
    assert doc["detector_regions_unreachable"] == {"conv5_3": ["eyebrows", "eyes"]}
    assert len(doc["detector_ceilings"]) == 4
    assert any("perfect detector of ['eyebrows', 'eyes']" in note for note in doc["notes"])
    # the detectors' correlation: unit 0 (eyes) follows AU43, unit 1 (mouth) AU26
    assert doc["detector_au_r_median"]["eyes"] > 0.9 and doc["detector_au_r_median"]["mouth"] > 0.9
    assert doc["detector_au_r_median"]["eyebrows"] is None  # no eyebrow detector
    r_table = pd.read_csv(demo / "out" / "planted_detectors.tsv", sep="\t", keep_default_na=False)
    assert r_table["unit"].tolist() == [0, 1, 2] and r_table["au"].tolist() == ["AU43", "AU26", ""]
    assert [a["au"] for a in doc["planted_au_i_max"]] == ["AU01", "AU12", "AU26", "AU45"]
    assert doc["planted_au_i_max"][0]["i_max"] == 40
    assert doc["planted_au_i_max"][0]["i_max_random_init"] is None
    assert list(table.columns) == ["check", "value", "goal", "met", "note", "value_random_init"]
    rows = table.set_index("check")
    row = rows.loc["null_false_positive_rate"]
    assert row["value"] == pytest.approx(0.004) and row["goal"] == "in [0, 0.02]"
    assert str(row["met"]).lower() == "true"
    assert rows.loc["cam_random_weights_overlap_share", "met"] == "not measured"
    assert rows.loc["i_max_AU01", "value"] == 40
    assert math.isnan(rows.loc["detector_precision_netdissect", "value"])
    assert "NaN" not in (demo / "out" / "planted.json").read_text()


def test_entry_with_the_untrained_network_and_the_truths_test(demo):
    doc, table = _run_entry(demo, optional=True)
    # the untrained network's maps lie on s000's padding: off the face
    assert doc["cam_random_weights_overlap_share"] == 0.0
    assert doc["goals"]["cam_random_weights_overlap_share"]["met"] is True
    # 1 detector of an untrained network against 3: 1 > 0.1 x 3
    assert doc["n_detectors_random_init"] == 1
    goal = doc["goals"]["n_detectors_random_init"]
    assert goal["value"] == pytest.approx(0.3) and goal["goal"] == "<= 0.1 x n_detectors"
    assert goal["met"] is False
    assert doc["random_init_planted_aus_significant_share"] == 0.0
    assert doc["truth_planted_aus_significant_share"] == pytest.approx(2 / 4)
    assert doc["planted_au_i_max"][0]["i_max_random_init"] == 3
    rows = table.set_index("check")
    truth_note = rows.loc["truth_planted_aus_significant_share", "note"]
    assert truth_note.endswith("significant: " + ", ".join(doc["truth_planted_aus_significant"]))
    assert len(doc["truth_planted_aus_significant"]) == 2
    assert rows.loc["n_detectors", "value_random_init"] == 1
    assert (
        rows.loc["i_max_AU45", "value"] == 60 and rows.loc["i_max_AU45", "value_random_init"] == 3
    )


def test_entry_refuses_a_foreign_truth(demo):
    (demo / "ground_truth" / "planted.json").write_text(json.dumps({"seed": 1}))
    with pytest.raises(SystemExit):
        _run_entry(demo)
    assert "not the demo's planted.json" in (demo / "validate_planted.log").read_text()


def test_json_ready_turns_nan_into_null():
    doc = {"a": float("nan"), "b": [np.float32(0.5), np.int64(3)], "c": {"d": float("inf")}}
    assert json.dumps(json_ready(doc)) == '{"a": null, "b": [0.5, 3], "c": {"d": null}}'


def test_goals_are_scored_and_null_is_never_met():
    cam = {"share": 0.8, "n_maps": 5, "n_scored": 5, "n_empty": 0, "n_no_truth": 0,
           "median_overlap": 0.9, "peak_in_face_share": 1.0, "ideal_share": 0.5,
           "ideal_median_overlap": 0.85, "offface_share": 0.1}  # fmt: skip
    detectors = pd.DataFrame(
        {"region": ["eyes"], "histogram_detector": [True], "netdissect_detector": [True]}
    )
    emergence = pd.DataFrame({"au": ["AU01"], "unit": [1], "layer": ["l"], "p": [0.5]})
    null = pd.DataFrame({"au": ["all"], "false_positive_rate": [0.5],
                         "cluster_false_positive_rate": [0.01]})  # fmt: skip
    args = (TRUTH, cam, cam, detectors, emergence, null, 0.2, 0.9, 0.01)
    doc = score_planted(*args)
    goals = doc["goals"]
    assert goals["cam_true_face_overlap_share"]["met"] is True  # 0.8 >= 0.7
    assert goals["cam_ideal_overlap_share"]["met"] is False  # 0.5 < 0.95
    assert goals["cam_offface_overlap_share"]["met"] is True  # 0.1 <= 0.2
    assert goals["null_false_positive_rate"]["met"] is True  # 0.01 in [0, 0.02]
    assert doc["detector_precision"] == 1.0
    assert math.isnan(doc["unplanted_aus_significant_share"])  # no unplanted AU in the table
    assert goals["unplanted_aus_significant_share"]["met"] is None  # NaN: not measured
    assert goals["n_detectors_random_init"]["met"] is None  # no untrained network
    high = score_planted(TRUTH, cam, cam, detectors, emergence,
                         null.assign(cluster_false_positive_rate=0.03), 0.2, 0.9, 0.01)  # fmt: skip
    assert high["goals"]["null_false_positive_rate"]["met"] is False  # outside [0, 0.02]
    with_random = score_planted(*args, detectors_random=detectors.iloc[:0])
    assert with_random["n_detectors_random_init"] == 0
    assert with_random["goals"]["n_detectors_random_init"]["met"] is True  # 0 <= 0.1 x 1
    assert set(GOALS) <= set(doc["goals"]) and set(GOALS) <= set(doc)


def test_pointing_game_uses_the_peak_cell_centre():
    from traitlens.demo.planted import peak_in_box

    maps = np.zeros((2, 1, 4, 4), np.float32)
    maps[0, 0, 1, 2] = 1.0  # cell centre at x = 2.5 * 100 / 4 - 0.5 = 62, y = 1.5 * 25 - 0.5 = 37
    maps[1, 0, 3, 0] = 1.0  # x = 12, y = 87
    boxes = np.array([[60, 30, 70, 40], [60, 30, 70, 40]], float)
    sizes = np.array([100, 100])
    assert peak_in_box(maps, boxes, sizes, sizes)[:, 0].tolist() == [True, False]


def _verdict_tables(truth_p: list[float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A 17-AU verdict table (the planted AUs at p 0.9, 13 others at 0.5, one decoy at
    0.0005) and the test on the planted values (truth names: AU43 for our AU45)."""
    others = [f"AU{n:02d}" for n in (2, 4, 5, 6, 7, 9, 10, 14, 15, 17, 20, 23, 25)]
    planted = ["AU01", "AU12", "AU26", "AU45"]
    verdict = pd.DataFrame(
        {"au": [*planted, *others, "AU01_decoy"], "p_perm": [0.9] * 4 + [0.5] * 13 + [0.0005]}
    )
    truth = pd.DataFrame({"au": ["AU01", "AU12", "AU26", "AU43"], "p_perm": truth_p})
    return verdict, truth


def test_the_truths_test_is_corrected_over_the_verdicts_family():
    planted = ["AU01", "AU12", "AU26", "AU45"]
    verdict, truth = _verdict_tables([0.0005, 0.0005, 0.003, 0.5])
    # over its own 4 AUs the truth's q of 0.003 is 0.003 x 4 / 3 = 0.004 < 0.01 (3 of 4);
    # over the verdict's 17 it is 0.003 x 17 / 3 = 0.017: only AU01 and AU12 (q 0.00425)
    out = truth_in_verdict_family(verdict, truth, planted, 0.01)
    assert out["planted_significant"] == ["AU01", "AU12"]
    assert out["planted_share"] == pytest.approx(2 / 4)
    assert (benjamini_hochberg(truth["p_perm"].to_numpy()) < 0.01).sum() == 3  # the milder bar
    # the verdict's own planted p (0.9) are replaced, and the decoy is not in the family
    verdict, truth = _verdict_tables([0.5, 0.5, 0.5, 0.5])
    assert truth_in_verdict_family(verdict, truth, planted, 0.01)["planted_share"] == 0.0
    # an older table without p_perm, or a truth's test written without videos (p_perm
    # empty): not scored this way, so score_planted falls back to au_significance
    assert truth_in_verdict_family(verdict.drop(columns="p_perm"), truth, planted, 0.01) is None
    assert truth_in_verdict_family(verdict, truth.assign(p_perm=np.nan), planted, 0.01) is None
