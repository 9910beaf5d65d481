"""Semantic detectors: spatial histograms on planted units, quantile thresholds against
np.quantile, Network Dissection IoU against a hand count, the tables, and the
find_detectors rule end to end on a tiny dump + template + faces shard."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.interpret.detectors import (
    CEILING_COLUMNS,
    COUNT_COLUMNS,
    TABLE_COLUMNS,
    ceiling_table,
    detector_counts,
    detector_table,
    find_detectors,
    histogram_verdicts,
    region_ceilings,
    region_histograms,
    region_scores,
)
from traitlens.interpret.netdissect import netdissect_iou, unit_quantile_thresholds
from traitlens.interpret.resample import area_matrix, resize_masks, upsample_maps

from support.activation_dumps import write_dump

REGIONS = ["eyebrows", "eyes", "nose", "mouth"]


# --- writers of the workflow's files in the shared spec's layout (no dependency on the
# --- dump writer: these are the formats as SPEC5 defines them) ------------------------------


def face_masks(size: int = 28) -> np.ndarray:
    """bool (4, size, size): disjoint rectangles for eyebrows, eyes, nose, mouth."""
    masks = np.zeros((4, size, size), bool)
    masks[0, 3:7, 4:24] = True
    masks[1, 7:13, 4:24] = True
    masks[2, 13:19, 10:18] = True
    masks[3, 20:25, 7:21] = True
    return masks


def write_template(path, masks: np.ndarray) -> None:
    size = masks.shape[-1]
    with h5py.File(path, "w") as f:
        f.attrs["region_names"] = REGIONS
        f["masks"] = masks
        f["mean_face"] = np.full((size, size, 3), 128, np.uint8)
        f["mean_landmarks"] = np.zeros((478, 2), np.float32)


def write_faces(path, n: int, size: int) -> np.ndarray:
    aligned = np.random.default_rng(3).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["aligned"] = aligned
        f["success"] = np.ones(n, bool)
    return aligned


# --- spatial histograms -------------------------------------------------------------------


def test_upsampling_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    maps = np.random.default_rng(0).random((2, 3, 14, 14), dtype=np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(maps), size=(56, 56), mode="bilinear", align_corners=False
    ).numpy()
    np.testing.assert_allclose(upsample_maps(maps, 56), expected, atol=1e-5)


def test_histogram_by_hand():
    # 2x2 maps at S = 2: upsampling is the identity, so the arithmetic is visible
    top = np.array(
        [[[[1.0, 0.4], [0.6, 0.0]], [[0.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]]]
    )  # one unit, three frames; the last is all zero and carries no position
    hist = region_histograms(top, n_top=3, size=2, threshold=0.5)
    # frame 1 keeps 1 and 0.6 (0.4 < 0.5 x 1): (1, 0.6) / 1.6; frame 2: all at (1, 1)
    expected = (np.array([[1.0, 0.0], [0.6, 0.0]]) / 1.6 + np.array([[0, 0], [0, 1.0]])) / 2
    np.testing.assert_allclose(hist[0], expected)
    # n_top = 1 uses only the strongest frame
    np.testing.assert_allclose(region_histograms(top, 1, 2, 0.5)[0], [[1 / 1.6, 0], [0.6 / 1.6, 0]])
    with pytest.raises(ValueError):
        region_histograms(top, 4, 2, 0.5)


def planted_top_maps(rng, n_units: int = 3, k: int = 20) -> np.ndarray:
    """(U, K, 8, 8): unit 0 peaks on the eyes cells (rows 2-3, column 2) with noise below
    the threshold elsewhere; unit 1 is diffuse (everything within 0.6..1 of its max);
    unit 2 peaks on the mouth cell (7, 4)."""
    maps = rng.uniform(0.0, 0.3, (n_units, k, 8, 8))
    strength = rng.uniform(1.0, 3.0, k)
    rows = rng.integers(2, 4, k)
    maps[0, np.arange(k), rows, 2] = strength
    maps[1] = rng.uniform(0.6, 1.0, (k, 8, 8))
    maps[2, :, 7, 4] = strength
    return maps.astype(np.float32)


def synthetic_masks(size: int = 32) -> np.ndarray:
    masks = np.zeros((4, size, size), bool)
    masks[0, 0:4, 4:16] = True  # eyebrows
    masks[1, 4:20, 4:16] = True  # eyes: holds the support of cells rows 2-3, column 2
    masks[2, 20:24, 12:20] = True  # nose
    masks[3, 24:32, 8:28] = True  # mouth
    return masks


def test_planted_eye_unit_scores_one_and_diffuse_unit_no_verdict():
    rng = np.random.default_rng(1)
    masks = synthetic_masks()
    hist = region_histograms(planted_top_maps(rng), n_top=20, size=32, threshold=0.5)
    np.testing.assert_allclose(hist.sum(axis=(1, 2)), 1.0)
    scores = region_scores(hist, masks)
    assert scores[0, 1] == pytest.approx(1.0, abs=1e-9)  # all of unit 0's mass on the eyes
    assert scores[1].max() < 0.5  # diffuse: at most the largest region's area share
    assert scores[1, 1] == pytest.approx(masks[1].mean(), abs=0.05)
    assert scores[2, 3] > 0.8
    verdicts = histogram_verdicts(scores, 0.5)
    assert verdicts.tolist() == [
        [False, True, False, False],
        [False, False, False, False],
        [False, False, False, True],
    ]


def test_histogram_verdict_is_the_best_region_only():
    scores = np.array([[0.45, 0.45, 0.1], [0.2, 0.3, 0.1], [0.1, 0.35, 0.55]])
    # min 0.4: unit 0 passes for two regions but counts once, for the first of the tie
    assert histogram_verdicts(scores, 0.4).tolist() == [
        [True, False, False],
        [False, False, False],
        [False, False, True],
    ]


# --- Network Dissection -------------------------------------------------------------------


def chunks(maps: np.ndarray, size: int):
    return ((s, maps[s : s + size]) for s in range(0, len(maps), size))


def face_like_masks(size: int = 56) -> np.ndarray:
    """bool (4, size, size) shaped like the template's regions: thin eyebrow bars, two
    small eye ellipses, a compact nose block, a wide mouth ellipse."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) * 56 / size
    masks = np.zeros((4, size, size), bool)
    masks[0] = (yy >= 15) & (yy < 18) & (((xx >= 10) & (xx < 24)) | ((xx >= 32) & (xx < 46)))
    for cx in (17, 39):
        masks[1] |= ((xx - cx) / 6) ** 2 + ((yy - 22) / 2.5) ** 2 <= 1
    masks[2] = (yy >= 24) & (yy < 37) & (xx >= 22) & (xx < 34)
    masks[3] = ((xx - 28) / 11) ** 2 + ((yy - 43) / 4) ** 2 <= 1
    return masks


def test_ceilings_show_the_resolution_bias_and_vanish_at_fine_maps():
    masks = face_like_masks()
    coarse = region_ceilings(masks, (8, 8), 0.5)
    # at 8x8 a perfect eye (eyebrow) detector's map spreads over its neighbours: it scores
    # below a perfect nose detector and below min_score 0.5, as measured on the demo's
    # template (eyebrows 0.32, eyes 0.23, nose 0.54, mouth 0.63)
    assert coarse[1] < coarse[2] and coarse[0] < coarse[2]
    assert coarse[0] < 0.5 and coarse[1] < 0.5
    fine = region_ceilings(masks, (28, 28), 0.5)
    assert (fine >= 0.5).all() and (fine > coarse).all()
    # at the template's own size the perfect map is the mask: all of its mass inside
    np.testing.assert_allclose(region_ceilings(masks, (56, 56), 0.5), 1.0)


def test_the_ceiling_is_what_a_real_unit_on_the_region_scores():
    # a unit whose top maps are the eye mask area-averaged to 8x8 scores the eye ceiling
    # through find_detectors' own path; a unit spread over the face scores less
    masks = face_like_masks()
    eye = region_ceilings(masks, (8, 8), 0.5)[1]
    from traitlens.interpret.resample import area_matrix

    a = area_matrix(56, 8)
    eye_map = a @ masks[1].astype(float) @ a.T
    top = np.stack([np.repeat(eye_map[None], 3, 0), np.ones((3, 8, 8))])  # (2 units, 3, 8, 8)
    scores = region_scores(region_histograms(top, 3, 56, 0.5), masks)
    assert scores[0, 1] == pytest.approx(eye) and scores[1, 1] < eye
    table = ceiling_table("conv5_3", (8, 8), masks, REGIONS, 0.5, 0.5)
    assert list(table.columns) == CEILING_COLUMNS and table["region"].tolist() == REGIONS
    assert table["reachable"].tolist() == [False, False, True, True]
    assert table.loc[1, "ceiling"] == pytest.approx(eye)


def test_quantile_thresholds_exact_and_histogram_paths():
    rng = np.random.default_rng(2)
    maps = rng.gamma(1.5, 1.0, (30, 4, 5, 5)).astype(np.float32)
    maps[:, 2] *= rng.random((30, 1, 1)) > 0.5  # a unit with many zeros
    maps[:, 3] = 0.0  # a dead unit
    q = 0.05
    values = np.moveaxis(maps, 1, 0).reshape(4, -1)
    expected = np.quantile(values, 1 - q, axis=1)
    exact = unit_quantile_thresholds(chunks(maps, 7), 4, q)
    np.testing.assert_allclose(exact, expected, rtol=1e-6)
    share_above = (values > exact[:, None]).mean(axis=1)[:3]
    assert np.all(np.abs(share_above - q) < 2 / values.shape[1])
    unit_max = maps.max(axis=(0, 2, 3))
    approx = unit_quantile_thresholds(chunks(maps, 7), 4, q, unit_max, memory_bytes=0, bins=256)
    assert np.all(np.abs(approx - expected) <= unit_max / 256 + 1e-9)  # within one bin
    assert not np.allclose(approx[:3], expected[:3], rtol=0, atol=1e-7)  # not the exact path
    assert approx[3] == 0.0
    big_bins = unit_quantile_thresholds(chunks(maps, 7), 4, q, unit_max, memory_bytes=0)
    assert np.all(np.abs(big_bins - expected) <= 0.01 * unit_max)  # the default: < 1% of max
    with pytest.raises(ValueError, match="unit_max"):
        unit_quantile_thresholds(chunks(maps, 7), 4, q, memory_bytes=0)


def test_mask_resizing_is_area_average_above_half():
    np.testing.assert_allclose(area_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 0:2, 0:2] = True  # a full 2x2 block -> one cell
    mask[0, 0:2, 4:7] = True  # 2x2 block (0, 2) full, block (0, 3) half -> only (0, 2)
    mask[0, 4, 0:2] = mask[0, 5, 0] = True  # 3 of 4 -> in
    small = resize_masks(mask, 4)[0]
    expected = np.zeros((4, 4), bool)
    expected[0, 0] = expected[0, 2] = expected[2, 0] = True
    assert small.tolist() == expected.tolist()


def test_iou_by_hand():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0:2, 0:2] = True  # A: top-left 2x2
    masks[1, 3, :] = True  # B: bottom row
    maps = np.zeros((2, 1, 4, 4), np.float32)
    maps[0, 0, 0:2, 0:2] = 1.0  # frame 1: A's four pixels + (0, 2): 5 active
    maps[0, 0, 0, 2] = 0.9
    maps[0, 0, 2, 2] = 0.5  # not above T = 0.5
    maps[1, 0, 3, 0] = 2.0  # frame 2: one pixel, in B
    iou = netdissect_iou(chunks(maps, 1), np.array([0.5]), masks, size=4)
    # A: inter 4 + 0, union (5 + 4 - 4) + (1 + 4 - 0) = 10; B: inter 0 + 1, union 9 + 4
    np.testing.assert_allclose(iou, [[4 / 10, 1 / 13]])


def test_iou_streaming_matches_one_shot():
    rng = np.random.default_rng(4)
    maps = rng.random((9, 3, 7, 7)).astype(np.float32)
    masks = synthetic_masks(28)
    t = np.array([0.5, 0.8, 2.0])  # the last is above every value: IoU 0
    up = upsample_maps(maps, 14) > t[None, :, None, None]
    small = resize_masks(masks, 14)
    inter = np.einsum("nuab,rab->ur", up.astype(int), small.astype(int))
    union = (up[:, :, None] | small[None, None]).sum(axis=(0, 3, 4))
    expected = np.where(union > 0, inter / union, 0)
    got = netdissect_iou(chunks(maps, 4), t, masks, size=14, memory_bytes=1)  # frame by frame
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.all(got[2] == 0)


# --- tables -------------------------------------------------------------------------------


def test_table_and_counts():
    scores = np.array([[0.1, 0.7, 0.1, 0.1], [0.3, 0.3, 0.2, 0.2], [0.0, 0.0, 0.0, 0.9]])
    iou = np.array([[0.0, 0.05, 0.0, 0.0], [0.01, 0.02, 0.03, 0.0], [0.0, 0.0, 0.03, 0.5]])
    table = detector_table("conv5_3", scores, iou, REGIONS, 0.5, 0.04)
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 12
    row = table[(table.unit == 0) & (table.region == "eyes")].iloc[0]
    assert row.score == 0.7 and row.iou == 0.05
    assert bool(row.histogram_detector) and bool(row.netdissect_detector)
    assert table.histogram_detector.sum() == 2 and table.netdissect_detector.sum() == 2
    no_maps = detector_table("conv4_3", scores, None, REGIONS, 0.5, 0.04)
    assert no_maps.iou.isna().all() and not no_maps.netdissect_detector.any()
    counts = detector_counts(pd.concat([table, no_maps], ignore_index=True))
    assert list(counts.columns) == COUNT_COLUMNS and len(counts) == 8
    assert counts.layer.tolist() == ["conv5_3"] * 4 + ["conv4_3"] * 4
    assert (counts.n_units == 3).all()
    eyes = counts[(counts.layer == "conv5_3") & (counts.region == "eyes")].iloc[0]
    assert eyes.n_histogram_detectors == 1 and eyes.n_netdissect_detectors == 1
    assert counts[counts.layer == "conv4_3"].n_netdissect_detectors.sum() == 0


# --- the find_detectors rule --------------------------------------------------------------


def planted_dump_maps(rng, n: int = 40, units: int = 5) -> np.ndarray:
    """(n, U, 7, 7): unit 0 fires on the eyes cell (2, 2), unit 3 on the mouth (5, 3),
    the rest is noise."""
    maps = rng.uniform(0, 0.2, (n, units, 7, 7))
    maps[:, 0, 2, 2] = rng.uniform(0.5, 3.0, n)
    maps[:, 3, 5, 3] = rng.uniform(0.5, 3.0, n)
    return maps.astype(np.float32)


def test_find_detectors_end_to_end(tmp_path, caplog):
    rng = np.random.default_rng(5)
    size, n = 28, 40
    masks = face_masks(size)
    write_template(tmp_path / "template.h5", masks)
    write_faces(tmp_path / "s000.h5", n, size)
    maps_a = planted_dump_maps(rng, n)
    write_dump(tmp_path / "conv5_2.h5", maps_a, "conv5_2", top_k=10)
    write_dump(tmp_path / "conv5_3.h5", planted_dump_maps(rng, n), "conv5_3", top_k=10,
               store_maps=False)  # fmt: skip
    out = tmp_path / "out"
    layers = ["conv5_2", "conv5_3"]
    # 40 frames x 49 cells: the top 5% (98 values) holds every frame's hot cell
    detectors = {"n_top": 8, "min_score": 0.5, "iou_quantile": 0.05, "min_iou": 0.04,
                 "iou_size": 14, "montage_units": 3}  # fmt: skip
    segmentation = {"threshold": 0.5, "n_images": 4, "units": 2,
                    "receptive_field": {"conv5_2": 0.3, "conv5_3": 0.3}}  # fmt: skip
    histograms = [out / f"unit_histograms_{layer}.png" for layer in layers]
    montages = [out / f"detectors_{r}.png" for r in REGIONS]
    with caplog.at_level(logging.WARNING, logger="traitlens.interpret.detectors"):
        table = find_detectors(
            [tmp_path / "conv5_2.h5", tmp_path / "conv5_3.h5"], tmp_path / "template.h5",
            [tmp_path / "s000.h5"], layers, detectors, segmentation, out / "detectors.tsv",
            out / "detector_counts.tsv", histograms, montages, progress=False,
            ceilings_out=out / "detector_ceilings.tsv",
        )  # fmt: skip
    assert "no maps stored" in caplog.text and "conv5_3" in caplog.text
    ceilings = pd.read_csv(out / "detector_ceilings.tsv", sep="\t")
    assert list(ceilings.columns) == CEILING_COLUMNS and len(ceilings) == 2 * 4
    assert (ceilings["map_height"] == 7).all() and ceilings["ceiling"].between(0, 1).all()
    np.testing.assert_allclose(
        ceilings["ceiling"][:4],
        region_ceilings(masks, (7, 7), segmentation["threshold"]),
        rtol=1e-5,  # written with 6 significant digits
    )
    written = pd.read_csv(out / "detectors.tsv", sep="\t")
    assert list(written.columns) == TABLE_COLUMNS and len(written) == 2 * 5 * 4
    hits = written[written.histogram_detector]
    assert sorted(zip(hits.layer, hits.unit, hits.region, strict=True)) == [
        ("conv5_2", 0, "eyes"), ("conv5_2", 3, "mouth"),
        ("conv5_3", 0, "eyes"), ("conv5_3", 3, "mouth"),
    ]  # fmt: skip
    a = written[written.layer == "conv5_2"]
    nd = a[a.netdissect_detector]
    assert sorted(zip(nd.unit, nd.region, strict=True)) == [(0, "eyes"), (3, "mouth")]
    eye_iou = a[a.unit == 0].set_index("region").iou
    assert eye_iou.idxmax() == "eyes" and eye_iou["eyes"] > 0.1
    b = written[written.layer == "conv5_3"]
    assert b.iou.isna().all() and not b.netdissect_detector.any()
    counts = pd.read_csv(out / "detector_counts.tsv", sep="\t")
    assert list(counts.columns) == COUNT_COLUMNS
    assert (
        counts.set_index(["layer", "region"]).loc[("conv5_2", "eyes"), "n_histogram_detectors"] == 1
    )
    assert len(table) == len(written)
    for path in [*histograms, *montages]:
        assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_find_detectors_bad_inputs(tmp_path):
    rng = np.random.default_rng(6)
    write_template(tmp_path / "template.h5", face_masks(28))
    write_faces(tmp_path / "s000.h5", 40, 28)
    write_dump(tmp_path / "d.h5", planted_dump_maps(rng), "conv5_3", top_k=10)
    detectors = {"n_top": 20, "min_score": 0.5, "iou_quantile": 0.005, "min_iou": 0.04,
                 "iou_size": 14, "montage_units": 3}  # fmt: skip
    seg = {"threshold": 0.5, "n_images": 4, "units": 2, "receptive_field": {"conv5_3": 0.3}}
    args = (tmp_path / "template.h5", [tmp_path / "s000.h5"], ["conv5_3"])
    outs = (tmp_path / "t.tsv", tmp_path / "c.tsv", [tmp_path / "h.png"],
            [tmp_path / f"{r}.png" for r in REGIONS])  # fmt: skip
    with pytest.raises(UserError, match="n_top"):  # 20 > the dump's top_k of 10
        find_detectors([tmp_path / "d.h5"], *args, detectors, seg, *outs, progress=False)
    with pytest.raises(UserError, match="expected layer conv5_2"):
        find_detectors([tmp_path / "d.h5"], args[0], args[1], ["conv5_2"],
                       {**detectors, "n_top": 5}, {**seg, "receptive_field": {"conv5_2": 0.3}},
                       *outs, progress=False)  # fmt: skip
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="build_face_template"):
        find_detectors([tmp_path / "d.h5"], tmp_path / "broken.h5", *args[1:],
                       {**detectors, "n_top": 5}, seg, *outs, progress=False)  # fmt: skip
