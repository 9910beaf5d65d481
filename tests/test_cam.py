"""CAM, Grad-CAM and the CAM-face overlap (traitlens.interpret: cam, cam_face_overlap).

Checks against independent computations: CAM maps equal sum_k w_kt A_k summed by hand
from the model's own features (and their means plus the bias are the logits); Grad-CAM's
alpha equals finite differences of a hand-written copy of the DAN+ head; the overlap,
binarisation and upsampling on maps and boxes with known answers; the CAM file round
trip; and compute_cam / plot_cam / cam_face_overlap end to end on tiny shard files
written in tmp_path (frames and faces datasets as the real stages write them).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from traitlens.core.errors import UserError
from traitlens.interpret import cam_face_overlap as overlap_module
from traitlens.interpret import cam_figures as cam_module
from traitlens.interpret.cam import compute_cam_file, gradcam_batch
from traitlens.interpret.cam_face_overlap import (
    SUMMARY_COLUMNS,
    binarise,
    box_overlap,
    face_overlap_table,
    frame_cam_measures,
    frame_overlaps,
    frame_overlaps_and_areas,
    largest_region_box,
    largest_region_boxes,
    overlap_summary,
    region_box_measures,
    upsample_map,
    write_overlap_tables,
)
from traitlens.interpret.cam_figures import overlap_histogram, plot_cam_figures
from traitlens.interpret.cam_file import read_cam_file, write_cam_file
from traitlens.models.dan import TRAIT_ORDER, DanCam, DanConfig, DanPlus
from traitlens.models.pixel_reader import PixelReader
from traitlens.models.train_data import SampleIndex, resize_batch
from traitlens.models.visual_model import RunConfig, save_weights

CPU = RunConfig(device="cpu", amp=False, num_workers=0, threads=1)
# VGG16 / 64 at 64 x 64 input: conv5_3 has 8 maps of 4 x 4
TINY = DanConfig(width_divisor=64, input_size=64, input_scale=1 / 64)
TINY_CAM = DanConfig(width_divisor=64, input_size=64, input_scale=1 / 64, head="cam")
H, W, S = 24, 40, 16  # stored frame and aligned face sizes of the synthetic shards


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(cfg: DanConfig, seed: int) -> DanPlus:
    torch.manual_seed(seed)
    model = DanCam(cfg) if cfg.head == "cam" else DanPlus(cfg)
    return model.eval()


# --- (b) overlap, (c) binarise, (d) upsample -------------------------------------------


def test_box_overlap_known_answers():
    mask = np.zeros((10, 20), dtype=bool)
    mask[2:6, 4:8] = True  # rows 2..5, columns 4..7: 16 pixels
    assert box_overlap(mask, (4, 2, 7, 5)) == 1.0  # edges exactly on pixel centres
    assert box_overlap(mask, (0, 0, 19, 9)) == 1.0
    assert box_overlap(mask, (4, 2, 5, 5)) == 0.5  # columns 4..5 of 4..7
    assert box_overlap(mask, (4.01, 2, 7, 5)) == 0.75  # column 4's centre is outside
    assert box_overlap(mask, (8, 0, 19, 9)) == 0.0
    assert np.isnan(box_overlap(np.zeros((10, 20), bool), (0, 0, 19, 9)))
    assert np.isnan(box_overlap(mask, (np.nan,) * 4))
    one = np.zeros((10, 20), dtype=bool)
    one[2, 3] = True  # x = 3, y = 2
    assert box_overlap(one, (3, 2, 3, 2)) == 1.0
    assert box_overlap(one, (3.5, 2, 9, 9)) == 0.0
    assert box_overlap(one, (-5, -5, 2.99, 9)) == 0.0


def test_binarise_at_a_fraction_of_the_maximum():
    m = np.array([[0.0, 0.1, 0.2], [0.19, 1.0, -3.0]])
    expected = np.array([[False, False, True], [False, True, False]])
    np.testing.assert_array_equal(binarise(m, 0.2), expected)
    np.testing.assert_array_equal(binarise(m * 5, 0.2), expected)  # relative to the max
    np.testing.assert_array_equal(binarise(m, 0.5), [[False] * 3, [False, True, False]])
    assert not binarise(np.array([[-1.0, -0.5], [0.0, -2.0]]), 0.2).any()
    assert not binarise(np.zeros((3, 3)), 0.2).any()


def test_upsample_map_bilinear_half_pixel():
    # align_corners False: output pixel x samples input (x + 0.5) / 2 - 0.5, clamped
    np.testing.assert_allclose(upsample_map(np.array([[0.0, 4.0]]), 1, 4), [[0, 1, 3, 4]])
    const = upsample_map(np.full((4, 4), 3.0), 216, 384)
    assert const.shape == (216, 384) and const.dtype == np.float32
    np.testing.assert_allclose(const, 3.0, rtol=1e-6)
    peak = np.zeros((4, 4))
    peak[1, 2] = 1.0  # cell (1, 2)'s centre: row 1.5 * 10 - 0.5, column 2.5 * 20 - 0.5
    up = upsample_map(peak, 40, 80)
    rows, cols = np.nonzero(np.isclose(up, up.max(), rtol=1e-6))
    assert set(rows) == {14, 15} and set(cols) == {49, 50}
    # pixels 14, 15 sample rows 0.95, 1.05 (0.05 cells from the peak); 49, 50 sample
    # columns 1.975, 2.025
    assert up.max() == pytest.approx(0.95 * 0.975, rel=1e-6)
    # everywhere: the product of two tents of one cell's half-width around the centre
    tent_r = np.clip(1 - np.abs((np.arange(40) + 0.5) / 10 - 0.5 - 1), 0, None)
    tent_c = np.clip(1 - np.abs((np.arange(80) + 0.5) / 20 - 0.5 - 2), 0, None)
    hand = np.outer(tent_r, tent_c)
    np.testing.assert_allclose(up, hand, atol=1e-6)
    np.testing.assert_array_equal(binarise(up, 0.2), hand >= 0.2 * hand.max())


def test_frame_overlaps_match_the_single_map_path():
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(7, 5, 3, 4)).astype(np.float32)
    maps[2, 1] = -1.0  # nothing positive: empty mask -> NaN
    maps[3] = 2.0  # constant: the whole frame
    boxes = rng.uniform(-5, 45, size=(7, 4))
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(0, 25, size=(7, 2))
    boxes[4] = np.nan
    boxes[3] = (0, 0, 9, 4)  # rows 0..4, columns 0..9 of 10 x 20: 50 of 200 pixels
    overlap, area = frame_overlaps_and_areas(maps, boxes, 10, 20, 0.2, chunk=3)
    np.testing.assert_array_equal(frame_overlaps(maps, boxes, 10, 20, 0.2), overlap)
    for i in range(7):
        for t in range(5):
            mask = binarise(upsample_map(maps[i, t], 10, 20), 0.2)
            np.testing.assert_equal(overlap[i, t], box_overlap(mask, boxes[i]))
            assert area[i, t] == mask.mean()
    np.testing.assert_array_equal(overlap[3], 0.25)
    np.testing.assert_array_equal(area[3], 1.0)
    assert np.isnan(overlap[4]).all() and np.isnan(overlap[2, 1]) and area[2, 1] == 0


def test_zhou_box_of_one_blob_on_the_face_lies_inside_it():
    mask = np.zeros((20, 30), bool)
    mask[5:12, 8:15] = True  # rows 5..11, columns 8..14
    box = largest_region_box(mask)
    np.testing.assert_array_equal(box, [8, 5, 14, 11])
    share, iou = region_box_measures(box, np.array([6.0, 4.0, 16.0, 13.0]), 20, 30)
    assert share == 1.0 and iou == pytest.approx(49 / (11 * 10))
    # the same blob moved off the face box: nothing inside
    off = largest_region_box(np.roll(mask, 15, axis=1))
    share, iou = region_box_measures(off, np.array([6.0, 4.0, 16.0, 13.0]), 20, 30)
    assert share == 0.0 and iou == 0.0
    assert np.isnan(largest_region_box(np.zeros((4, 4), bool))).all()


def test_zhou_box_of_two_blobs_is_the_larger_ones():
    mask = np.zeros((20, 30), bool)
    mask[1:3, 1:3] = True  # 4 pixels, first in raster order
    mask[10:16, 20:28] = True  # 48 pixels
    np.testing.assert_array_equal(largest_region_box(mask), [20, 10, 27, 15])
    # diagonal neighbours are one component (8-connected, as Zhou et al.'s contours)
    diagonal = np.zeros((6, 6), bool)
    diagonal[[0, 1, 2, 3], [0, 1, 2, 3]] = True
    diagonal[5, 5] = True
    np.testing.assert_array_equal(largest_region_box(diagonal), [0, 0, 3, 3])
    # equal sizes: the first in raster order
    tie = np.zeros((6, 6), bool)
    tie[4, 4:6] = True
    tie[0, 0:2] = True
    np.testing.assert_array_equal(largest_region_box(tie), [0, 0, 1, 0])


def _pixel_labelled_box(mask: np.ndarray) -> np.ndarray:
    """The reference: the pixels labelled one by one (scipy.ndimage.label, 8-connected),
    the largest label (the lowest, i.e. first in raster order, among equals)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.full(4, np.nan)
    best = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
    rows, cols = ndimage.find_objects(labels, max_label=best)[best - 1]
    return np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=float)


def test_zhou_boxes_from_runs_equal_pixel_labelling_on_random_masks():
    """Masks of 1-29 rows and columns, sparse to dense (many components, ties, diagonal
    touches, components at the masks' edges, empty masks), several per call so that no
    component may leak from one mask into the next. Negative control: the boxes of the
    masks in another order differ."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = rng.integers(1, 30, 2)
        masks = rng.random((int(rng.integers(1, 6)), h, w)) < rng.uniform(0.05, 0.7)
        masks[0] &= trial % 4 != 0  # an empty mask now and then
        got = largest_region_boxes(masks)
        want = np.array([_pixel_labelled_box(m) for m in masks])
        np.testing.assert_array_equal(got, want, err_msg=f"trial {trial}")
    # the last mask below the first: each keeps its own, the stack is not one image
    stack = np.zeros((2, 4, 4), bool)
    stack[0, 3, :2] = stack[1, 0, 1:] = True
    np.testing.assert_array_equal(largest_region_boxes(stack), [[0, 3, 1, 3], [1, 0, 3, 0]])
    assert not np.array_equal(largest_region_boxes(stack[::-1]), largest_region_boxes(stack))


def test_region_measures_by_hand_and_the_face_clipped_to_the_frame():
    region = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [np.nan] * 4])
    face = np.array([[5, 5, 14, 14], [-5.3, -5.3, 4.4, 4.4], [0, 0, 9, 9]])
    share, iou = region_box_measures(region, face, 12, 12)
    # 25 of the region's 100 pixels inside; the face: columns/rows 5..11 in a 12 x 12 frame
    assert share[0] == pytest.approx(0.25) and iou[0] == pytest.approx(25 / (100 + 49 - 25))
    # the face's pixels 0..4 (its part outside the frame has no pixels)
    assert share[1] == pytest.approx(0.25) and iou[1] == pytest.approx(25 / 100)
    assert np.isnan(share[2]) and np.isnan(iou[2])


def test_a_stray_blob_lowers_the_overlap_but_not_zhous_box():
    # a map peaking on the face, with a weaker blob far from it: the binarised mask has
    # two parts; the paper's overlap counts both, Zhou's box only the larger
    maps = np.zeros((1, 1, 10, 20), np.float32)
    maps[0, 0, 2:7, 2:8] = 1.0
    maps[0, 0, 8, 17] = 0.5
    face = np.array([[1.5, 1.5, 8.5, 7.5]])
    got = frame_cam_measures(maps, face, 10, 20, 0.2)
    assert got["overlap"][0, 0] < 1.0 and got["region_share"][0, 0] == 1.0
    np.testing.assert_array_equal(got["region_box"][0, 0], [2, 2, 7, 6])
    # the same numbers as the single-map path
    mask = binarise(upsample_map(maps[0, 0], 10, 20), 0.2)
    assert got["overlap"][0, 0] == box_overlap(mask, face[0])
    np.testing.assert_array_equal(got["region_box"][0, 0], largest_region_box(mask))
    # a map with nothing positive has no region
    empty = frame_cam_measures(-maps, face, 10, 20, 0.2)
    assert np.isnan(empty["region_share"]).all() and np.isnan(empty["region_box"]).all()


def test_overlap_summary_counts_and_shares():
    table = pd.DataFrame(
        {
            "source": ["a"] * 6 + ["b"],
            "trait": ["openness"] * 4 + ["neuroticism"] * 2 + ["openness"],
            "overlap": [1.0, 0.95, 0.5, np.nan, 0.2, np.nan, np.nan],
        }
    )
    s = overlap_summary(table, 0.9).set_index(["source", "trait"])
    assert list(s.loc[("a", "openness"), ["n_frames", "n_scored"]]) == [4, 3]
    assert s.loc[("a", "openness"), "share_at_least"] == pytest.approx(2 / 3)
    assert s.loc[("a", "openness"), "median_overlap"] == pytest.approx(0.95)
    assert s.loc[("a", "neuroticism"), "share_at_least"] == 0.0
    assert list(s.loc[("a", "all"), ["n_frames", "n_scored"]]) == [6, 4]
    assert s.loc[("a", "all"), "share_at_least"] == 0.5
    assert s.loc[("a", "all"), "median_overlap"] == pytest.approx(0.725)
    assert s.loc[("b", "all"), "n_scored"] == 0 and np.isnan(s.loc[("b", "all"), "share_at_least"])
    assert (s["min_overlap"] == 0.9).all()
    assert list(overlap_summary(table, 0.9).columns) == list(SUMMARY_COLUMNS)
    assert s["region_share_at_least"].isna().all()  # a table without Zhou's columns
    table["region_share"] = [1.0, 0.5, 0.95, np.nan, 0.0, np.nan, np.nan]
    table["region_iou"] = [0.4, 0.2, 0.6, np.nan, 0.0, np.nan, np.nan]
    r = overlap_summary(table, 0.9).set_index(["source", "trait"])
    assert r.loc[("a", "openness"), "region_share_at_least"] == pytest.approx(2 / 3)
    assert r.loc[("a", "all"), "region_share_at_least"] == pytest.approx(0.5)
    assert r.loc[("a", "openness"), "median_region_iou"] == pytest.approx(0.4)


# --- (e) Grad-CAM ------------------------------------------------------------------------


def _dan_plus_tail(model: DanPlus, conv5_2: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """DAN+'s logits from relu5_2 and relu5_3 = a, written out again by hand."""
    pool5 = F.max_pool2d(a, 2, 2)
    parts = []
    for x in (conv5_2, pool5):
        parts += [F.normalize(x.mean(dim=(2, 3)), dim=1), F.normalize(x.amax(dim=(2, 3)), dim=1)]
    return model.head(torch.cat(parts, dim=1))


def test_gradcam_alpha_matches_finite_differences():
    model = _model(TINY, seed=1).double()
    with torch.no_grad():
        # relu5_3 strictly positive: no ReLU or max-pool ties where the differences are taken
        model.backbone.conv5_3.bias += 5.0
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 64)))
    maps, alpha, a, pred = gradcam_batch(model, x, "conv5_3")
    assert maps.shape == (2, 5, 4, 4) and alpha.shape == (2, 5, 8)
    with torch.no_grad():
        acts = model.activations(x, ["conv5_2", "conv5_3"])
        torch.testing.assert_close(a, acts["conv5_3"])
        assert (a > 0).all()
        torch.testing.assert_close(pred, model(x))
        base = acts["conv5_3"]
        torch.testing.assert_close(
            torch.sigmoid(_dan_plus_tail(model, acts["conv5_2"], base)), pred
        )
        eps = 1e-6
        grad = torch.zeros(2, 5, *base.shape[1:], dtype=torch.float64)
        for k, i, j in np.ndindex(*base.shape[1:]):
            step = torch.zeros_like(base)
            step[:, k, i, j] = eps
            up = _dan_plus_tail(model, acts["conv5_2"], base + step)
            down = _dan_plus_tail(model, acts["conv5_2"], base - step)
            grad[:, :, k, i, j] = (up - down) / (2 * eps)
    alpha_fd = grad.mean(dim=(3, 4))
    assert alpha_fd.abs().max() > 1e-3  # the check compares something
    torch.testing.assert_close(alpha, alpha_fd, rtol=1e-5, atol=1e-8)
    expected = torch.relu(torch.einsum("ntk,nkhw->nthw", alpha_fd, base))
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-8)
    assert (maps >= 0).all() and (maps > 0).any()
    with pytest.raises(ValueError, match="no backbone layer"):
        gradcam_batch(model, x, "conv9_9")


# --- tiny shard files ---------------------------------------------------------------------

VIDEOS = [["v0", "v1", "v2"], ["v3", "v4"]]  # per shard
SPLITS = {"v0": "test", "v1": "train", "v2": "test", "v3": "test", "v4": "validation"}


def _strings(f: h5py.File, name: str, values) -> None:
    f.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())


def make_shards(folder: Path) -> tuple[list[str], list[str], pd.DataFrame]:
    """Two shards, 3 frames per video; faces: some frames without a face."""
    rng = np.random.default_rng(11)
    frames_paths, faces_paths = [], []
    for s, ids in enumerate(VIDEOS):
        n = 3 * len(ids)
        video_index = np.repeat(np.arange(len(ids)), 3).astype(np.int32)
        frame_index = np.tile([0, 5, 10], len(ids)).astype(np.int32)
        for sub, dataset, size in (("frames", "frames", (H, W)), ("faces", "aligned", (S, S))):
            (folder / sub).mkdir(exist_ok=True)
            path = folder / sub / f"s{s:03d}.h5"
            with h5py.File(path, "w") as f:
                f.create_dataset(dataset, data=rng.integers(0, 256, (n, *size, 3), np.uint8))
                f.create_dataset("video_index", data=video_index)
                f.create_dataset("frame_index", data=frame_index)
                _strings(f, "video_id", ids)
                if sub == "faces":
                    success = np.ones(n, bool)
                    success[1] = False
                    box = np.tile(np.array([8.0, 4.0, 25.0, 19.0], np.float32), (n, 1))
                    box += rng.uniform(-3, 3, (n, 4)).astype(np.float32)
                    box[1] = np.nan
                    f.create_dataset("success", data=success)
                    f.create_dataset("box", data=box)
            (frames_paths if sub == "frames" else faces_paths).append(str(path))
    labels = pd.DataFrame({"video_id": list(SPLITS), "split": list(SPLITS.values())})
    for k, trait in enumerate(TRAIT_ORDER):
        labels[trait] = 0.1 * (k + 1)
    return frames_paths, faces_paths, labels


@pytest.fixture
def shards(tmp_path):
    return make_shards(tmp_path)


def _pixels(paths, kind, files, rows, size) -> torch.Tensor:
    reader = PixelReader(kind, paths)
    try:
        return resize_batch(reader.read(files, rows), size).float()
    finally:
        reader.close()


# --- (a), (g) compute_cam end to end ---------------------------------------------------


def test_compute_cam_img_equals_the_weighted_sum_of_features(tmp_path, shards):
    frames, _, labels = shards
    weights = tmp_path / "img_cam.pt"
    model = _model(TINY_CAM, seed=2)
    save_weights(model, "img", weights)
    out = tmp_path / "cam" / "img.h5"
    n = compute_cam_file("img", "cam", weights, labels, frames, "test", 4, CPU, out)
    assert n == 9  # v0, v2 (3 frames each) + v3
    cam = read_cam_file(out)
    assert (cam["source"], cam["method"], cam["layer"], cam["kind"]) == (
        "img",
        "cam",
        "cam_conv",
        "img",
    )
    assert cam["input_size"] == 64 and cam["split"] == "test"
    assert cam["maps"].shape == (9, 5, 4, 4) and cam["predictions"].shape == (9, 5)
    assert list(cam["video_id"]) == ["v0"] * 3 + ["v2"] * 3 + ["v3"] * 3
    assert list(cam["shard_file"]) == ["s000.h5"] * 6 + ["s001.h5"] * 3
    assert list(cam["row"]) == [0, 1, 2, 6, 7, 8, 0, 1, 2]
    assert list(cam["frame_index"]) == [0, 5, 10] * 3
    # by hand from the model's own features
    file_no = np.array([0] * 6 + [1] * 3)
    x = _pixels(frames, "img", file_no, cam["row"], 64)
    with torch.no_grad():
        a = model.cam_features(x).numpy().astype(np.float64)
        logit = torch.logit(model(x).double()).numpy()
    w = model.head.weight.detach().numpy().astype(np.float64)
    b = model.head.bias.detach().numpy().astype(np.float64)
    hand = np.zeros((9, 5, 4, 4))
    for t in range(5):
        for k in range(a.shape[1]):
            hand[:, t] += w[t, k] * a[:, k]
    assert np.abs(hand).max() > 1e-3
    np.testing.assert_allclose(cam["maps"], hand, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(hand.mean(axis=(2, 3)) + b, logit, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cam["predictions"], 1 / (1 + np.exp(-logit)), rtol=1e-5)


def test_compute_cam_face_and_gradcam_and_refusals(tmp_path, shards):
    frames, faces, labels = shards
    face_w, img_w = tmp_path / "face_cam.pt", tmp_path / "img.pt"
    save_weights(_model(TINY_CAM, seed=3), "face", face_w)
    save_weights(_model(TINY, seed=4), "img", img_w)
    out = tmp_path / "cam"
    # faces: the test frames whose face was found (row 1 of each shard has none)
    assert compute_cam_file("face", "cam", face_w, labels, faces, "test", 4, CPU, out / "f.h5") == 7
    cam = read_cam_file(out / "f.h5")
    assert cam["kind"] == "face" and cam["maps"].shape == (7, 5, 4, 4)
    assert 1 not in set(cam["row"][cam["shard_file"] == "s000.h5"])
    n = compute_cam_file(
        "img_gradcam", "gradcam", img_w, labels, frames, "test", 4, CPU, out / "g.h5"
    )
    grad = read_cam_file(out / "g.h5")
    assert n == 9 and grad["maps"].shape == (9, 5, 4, 4) and grad["layer"] == "conv5_3"
    assert (grad["maps"] >= 0).all() and grad["method"] == "gradcam"
    with pytest.raises(UserError, match="not a CAM-variant model.*train_visual"):
        compute_cam_file("img", "cam", img_w, labels, frames, "test", 4, CPU, out / "x.h5")
    with pytest.raises(UserError, match="no img samples of the 'nope' split"):
        compute_cam_file("img", "gradcam", img_w, labels, frames, "nope", 4, CPU, out / "x.h5")
    assert not (out / "x.h5").exists()


# --- (f) the CAM file ------------------------------------------------------------------


def _index(paths, file, row, video_id, frame_index) -> SampleIndex:
    return SampleIndex(
        paths=tuple(paths),
        file=np.array(file, np.int32),
        row=np.array(row, np.int64),
        video_id=np.array(video_id, dtype=object),
        frame_index=np.array(frame_index, np.int32),
        split=np.array(["test"] * len(row), dtype=object),
        labels=np.zeros((len(row), 5), np.float32),
    )


def test_cam_file_round_trip_and_bad_file(tmp_path):
    index = _index(
        ("/a/frames/s000.h5", "/a/frames/s001.h5"),
        [0, 1, 1],
        [4, 0, 7],
        ["x.000", "y.001", "y.001"],
        [1, 47, 93],
    )
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(3, 5, 2, 3)).astype(np.float32)
    pred = rng.uniform(size=(3, 5)).astype(np.float32)
    path = tmp_path / "cam" / "img.h5"
    write_cam_file(
        path, "img", "cam", "cam_conv", "img", 96, "test", index, maps, pred, traits=TRAIT_ORDER
    )
    cam = read_cam_file(path)
    np.testing.assert_array_equal(cam["maps"], maps)
    np.testing.assert_array_equal(cam["predictions"], pred)
    assert list(cam["video_id"]) == ["x.000", "y.001", "y.001"]
    assert list(cam["shard_file"]) == ["s000.h5", "s001.h5", "s001.h5"]
    assert cam["row"].dtype == np.int64 and list(cam["row"]) == [4, 0, 7]
    assert cam["frame_index"].dtype == np.int32 and list(cam["frame_index"]) == [1, 47, 93]
    assert cam["traits"] == list(TRAIT_ORDER) and cam["input_size"] == 96
    assert {cam["source"], cam["method"], cam["layer"], cam["kind"], cam["split"]} == {
        "img",
        "cam",
        "cam_conv",
        "test",
    }
    assert all(name in cam["schema"] for name in ("maps", "predictions", "shard_file", "row"))
    assert [p.name for p in path.parent.iterdir()] == ["img.h5"]  # no temp file left
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("maps", data=maps)
    with pytest.raises(UserError, match="bad.h5.*missing.*compute_cam"):
        read_cam_file(tmp_path / "bad.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="junk.h5.*compute_cam"):
        read_cam_file(tmp_path / "junk.h5")


# --- plot_cam and cam_face_overlap on the synthetic shards ---------------------------------


@pytest.fixture
def img_cam(tmp_path, shards):
    frames, _, labels = shards
    weights = tmp_path / "img_cam.pt"
    # seed 1: every map has a positive cell, so every frame with a face gets an overlap
    # (at seed 6 all maps were negative and every overlap NaN)
    save_weights(_model(TINY_CAM, seed=1), "img", weights)
    out = tmp_path / "cam" / "img.h5"
    compute_cam_file("img", "cam", weights, labels, frames, "test", 4, CPU, out)
    return out


def test_plot_cam_shows_the_top_frames(tmp_path, shards, img_cam, monkeypatch):
    frames, _, _ = shards
    cam = read_cam_file(img_cam)
    shown = []
    real = cam_module.cam_grid_figure

    def record(images, maps, scores, title, path, alpha):
        shown.append((images, maps, scores, title))
        real(images, maps, scores, title, path, alpha)

    monkeypatch.setattr(cam_module, "cam_grid_figure", record)
    outs = [tmp_path / "figures" / f"cam_img_{t}.png" for t in TRAIT_ORDER]
    plot_cam_figures(img_cam, frames[::-1], outs, n_frames=4, alpha=0.5)  # any input order
    assert all(p.stat().st_size > 1000 for p in outs)
    with h5py.File(frames[0]) as f0, h5py.File(frames[1]) as f1:
        stored = np.concatenate([f0["frames"][:], f1["frames"][:]])
    offset = np.where(cam["shard_file"] == "s000.h5", 0, 9)
    for t, (images, maps, scores, title) in enumerate(shown):
        top = np.argsort(-cam["predictions"][:, t])[:4]
        assert scores[0] == cam["predictions"][:, t].max() and np.all(np.diff(scores) <= 0)
        np.testing.assert_array_equal(scores, cam["predictions"][top, t])
        np.testing.assert_array_equal(maps, cam["maps"][top, t])
        np.testing.assert_array_equal(images, stored[offset[top] + cam["row"][top]])
        assert TRAIT_ORDER[t] in title
    with pytest.raises(UserError, match="s001.h5.*not among"):
        plot_cam_figures(img_cam, frames[:1], outs, n_frames=4, alpha=0.5)


def test_cam_face_overlap_table_is_the_same_on_any_number_of_threads(shards, img_cam, monkeypatch):
    """Tasks of 2 frames on 3 threads finish out of order; the rows must not. Negative
    control: the same table with one CAM row's maps changed differs."""
    frames, faces, _ = shards
    one = face_overlap_table([img_cam, img_cam], faces, frames, 0.2)
    monkeypatch.setattr(overlap_module, "TASK_FRAMES", 2)
    many = face_overlap_table([img_cam, img_cam], faces, frames, 0.2, threads=3, progress=True)
    pd.testing.assert_frame_equal(one, many)
    assert len(one) == 2 * 9 * 5 and one["overlap"].notna().sum() == 2 * 7 * 5
    real = overlap_module.read_cam_file

    def moved(path):  # frame 4's maps mirrored left to right
        cam = real(path)
        cam["maps"][4] = cam["maps"][4][..., ::-1]
        return cam

    monkeypatch.setattr(overlap_module, "read_cam_file", moved)
    changed = face_overlap_table([img_cam], faces, frames, 0.2, threads=3)
    assert not changed["overlap"].equals(one["overlap"][:45])


def test_cam_face_overlap_table(tmp_path, shards, img_cam):
    frames, faces, _ = shards
    table = face_overlap_table([img_cam], faces, frames, threshold=0.2)
    cam = read_cam_file(img_cam)
    assert len(table) == 9 * 5 and list(table.columns) == list(overlap_module.OVERLAP_COLUMNS)
    assert list(table["trait"][:5]) == list(TRAIT_ORDER)
    with h5py.File(faces[0]) as f0, h5py.File(faces[1]) as f1:
        boxes = {"s000.h5": f0["box"][:], "s001.h5": f1["box"][:]}
    for i in range(9):
        box = boxes[cam["shard_file"][i]][cam["row"][i]]
        for t in range(5):
            row = table.iloc[i * 5 + t]
            mask = binarise(upsample_map(cam["maps"][i, t], H, W), 0.2)
            assert row["video_id"] == cam["video_id"][i]
            assert row["face_found"] == bool(np.isfinite(box).all())
            np.testing.assert_equal(row["overlap"], box_overlap(mask, box))
            assert row["cam_area"] == pytest.approx(mask.mean())
            share, iou = region_box_measures(largest_region_box(mask), box, H, W)
            np.testing.assert_equal([row["region_share"], row["region_iou"]], [share, iou])
    no_face = table[~table["face_found"]]
    assert len(no_face) == 2 * 5 and no_face["overlap"].isna().all()  # row 1 of each shard
    # the rows compared above are numbers, not NaN against NaN
    assert table.loc[table["face_found"], "overlap"].notna().all()
    assert table["overlap"].nunique() > 5
    summary = overlap_summary(table, 0.9)
    paths = [tmp_path / "tables" / n for n in ("overlap.tsv", "summary.tsv")]
    write_overlap_tables(table, summary, *paths)
    back = pd.read_csv(paths[0], sep="\t")
    assert set(back["face_found"]) == {True, False} and back["overlap"].isna().sum() >= 10
    overlap_histogram(table, 0.9, tmp_path / "figures" / "overlap.png")
    assert (tmp_path / "figures" / "overlap.png").stat().st_size > 1000
    face_cam = tmp_path / "cam" / "face.h5"
    index = _index(("faces/s000.h5",), [0], [0], ["v0"], [0])
    one = np.zeros((1, 5), np.float32)
    write_cam_file(
        face_cam, "face", "cam", "cam_conv", "face", 64, "test", index, one[..., None, None], one,
        traits=TRAIT_ORDER,
    )  # fmt: skip
    with pytest.raises(UserError, match="face.h5.*whole frames"):
        face_overlap_table([face_cam], faces, frames, 0.2)
