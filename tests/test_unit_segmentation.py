"""Unit segmentation (Zhou et al. ICLR'15): receptive-field squares of the hot cells,
the threshold, the dimmed image, the default unit choice, and the
plot_unit_segmentation rule on a tiny dump + frames shard."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.interpret.unit_segmentation import (
    masked_image,
    pick_units,
    plot_unit_segmentation,
    segmentation_mask,
    unit_montage,
)

from support.activation_dumps import write_dump


def test_one_hot_cell_gives_a_square_of_the_field_at_the_cell():
    m = np.zeros((14, 14))
    m[3, 5] = 2.0
    mask = segmentation_mask(m, (112, 112), threshold=0.5, receptive_field=0.25)
    # cell (3, 5) of 8 px cells: centre x = 5.5 * 8 = 44, y = 3.5 * 8 = 28; side 28 px
    expected = np.zeros((112, 112), bool)
    expected[14:42, 30:58] = True
    assert mask.tolist() == expected.tolist()


def test_squares_are_clipped_and_united():
    m = np.zeros((4, 4))
    m[0, 0] = m[0, 1] = 1.0
    mask = segmentation_mask(m, (16, 16), threshold=0.5, receptive_field=0.5)
    # centres (2, 2) and (6, 2), side 8: x in [-2, 10) clipped to [0, 10), y in [0, 6)
    expected = np.zeros((16, 16), bool)
    expected[0:6, 0:10] = True
    assert mask.tolist() == expected.tolist()


def test_non_square_image_scales_the_field_per_axis():
    m = np.zeros((2, 2))
    m[1, 1] = 1.0
    mask = segmentation_mask(m, (20, 40), threshold=0.5, receptive_field=0.5)
    # centre (x 30, y 15); field 20 wide, 10 high
    expected = np.zeros((20, 40), bool)
    expected[10:20, 20:40] = True
    assert mask.tolist() == expected.tolist()


def test_threshold_is_a_fraction_of_the_max_strictly_exceeded():
    m = np.array([[1.0, 0.6], [0.4, 0.5]])  # 2x2 cells of an 8x8 image, field = one cell
    top_half = np.zeros((8, 8), bool)
    top_half[:4] = True
    assert segmentation_mask(m, (8, 8), 0.5, 0.5).tolist() == top_half.tolist()  # 0.5 is not > 0.5
    assert segmentation_mask(m, (8, 8), 0.35, 0.5).all()
    only_peak = np.zeros((8, 8), bool)
    only_peak[:4, :4] = True
    assert segmentation_mask(m, (8, 8), 0.9, 0.5).tolist() == only_peak.tolist()
    assert not segmentation_mask(np.zeros((2, 2)), (8, 8), 0.5, 0.5).any()
    assert not segmentation_mask(-np.ones((2, 2)), (8, 8), 0.5, 0.5).any()


def test_masked_image_dims_outside_only():
    image = np.full((4, 4, 3), 200, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    out = masked_image(image, mask, dim=0.2)
    assert out.dtype == np.uint8
    assert (out[mask] == 200).all() and (out[~mask] == 40).all()
    with pytest.raises(ValueError):
        masked_image(image, np.ones((3, 3), bool))


def test_pick_units_by_mean_of_top_values_deterministic_ties():
    values = np.array(
        [[9.0, 1.0, 5.0, 5.0, 0.0],
         [0.0, 1.0, 5.0, 4.0, 0.0],
         [0.0, 8.0, 1.0, 6.0, 0.0]]
    )  # fmt: skip
    # top-2 means: unit 0 4.5, unit 1 4.5, unit 2 5.0, unit 3 5.5, unit 4 0
    assert pick_units(values, 3, top_k=2).tolist() == [3, 2, 0]  # 0 before 1 (tie)
    assert pick_units(values, 5, top_k=2).tolist() == [3, 2, 0, 1, 4]
    # the top-1 (max) ranking differs: 9, 8, 5, 6, 0
    assert pick_units(values, 2, top_k=1).tolist() == [0, 1]
    # a dump's top_value (U, K) transposed gives the same as the full max with top_k = K
    top_value = -np.sort(-values.T, axis=1)[:, :2]
    assert pick_units(top_value.T, 5).tolist() == pick_units(values, 5, top_k=2).tolist()
    assert pick_units(values, 5, top_k=2).tolist() == pick_units(values, 5, top_k=2).tolist()


def test_unit_montage_writes_png(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    unit_montage([("conv5_3 #1 eyes 0.71", [img, img]), ("#2", [img])], tmp_path / "m.png", "t")
    unit_montage([], tmp_path / "empty.png", "t", empty_message="nothing")
    for name in ("m.png", "empty.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_plot_unit_segmentation_on_frames(tmp_path):
    rng = np.random.default_rng(0)
    n, h, w = 24, 4, 4
    maps = rng.uniform(0, 0.1, (n, 3, h, w)).astype(np.float32)
    maps[:, 1, 0, 0] = rng.uniform(1, 2, n)  # unit 1 responds strongest
    maps[:, 2, 3, 3] = rng.uniform(0.5, 1, n)
    # frames from two shard files, rows interleaved
    shard = ["s001.h5" if i % 2 else "s000.h5" for i in range(n)]
    rows = np.arange(n) // 2
    write_dump(tmp_path / "conv5_3.h5", maps, "conv5_3", kind="img", model="img",
               top_k=6, shard_file=shard, rows=rows)  # fmt: skip
    for name in ("s000.h5", "s001.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["frames"] = rng.integers(0, 256, (n // 2, 18, 32, 3), dtype=np.uint8)
    data = [tmp_path / "s000.h5", tmp_path / "s001.h5"]
    seg = {"threshold": 0.5, "n_images": 3, "units": 2, "receptive_field": {"conv5_3": 0.3}}
    units = plot_unit_segmentation(tmp_path / "conv5_3.h5", data, seg, tmp_path / "u.png")
    assert units == [1, 2]
    assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"
    listed = plot_unit_segmentation(
        tmp_path / "conv5_3.h5", data, {**seg, "units": [0, 2]}, tmp_path / "v.png"
    )
    assert listed == [0, 2]
    with pytest.raises(UserError, match="units 0..2"):
        plot_unit_segmentation(
            tmp_path / "conv5_3.h5", data, {**seg, "units": [5]}, tmp_path / "w.png"
        )
    with pytest.raises(UserError, match="s001.h5"):
        plot_unit_segmentation(tmp_path / "conv5_3.h5", data[:1], seg, tmp_path / "w.png")
    with pytest.raises(UserError, match="receptive_field"):
        plot_unit_segmentation(
            tmp_path / "conv5_3.h5", data, {**seg, "receptive_field": {}}, tmp_path / "w.png"
        )
