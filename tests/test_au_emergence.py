"""AU-detector emergence: the log-space hypergeometric p against scipy, the best unit,
and the rule level (join with the AU tables, table, permutation null, figure)."""

from __future__ import annotations

import logging
import math
import runpy
import time
from pathlib import Path

import h5py
import matplotlib.image as plt_image
import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom
from snakemake.iocontainers import Namedlist

from traitlens.core.errors import UserError
from traitlens.interpret.au_emergence import (
    TABLE_COLUMNS,
    au_unit_frames,
    emergence_table,
    join_frames,
    null_table,
    top_n_masks,
)
from traitlens.interpret.au_emergence_figure import plot_emergence
from traitlens.interpret.emergence_stats import (
    emergence,
    log_corrected_p,
    log_tail,
    null_false_positive_rate,
    significance_threshold,
    top_n_mask,
)


@pytest.mark.parametrize(
    ("k", "f", "n"),
    [(0, 50, 5), (1, 50, 5), (3, 50, 5), (5, 50, 5), (2, 1000, 20), (10, 1000, 20),
     (20, 1000, 20), (30, 100_000, 500), (60, 100_000, 500), (8, 20, 10)],
)  # fmt: skip
def test_log_tail_matches_scipy(k, f, n):
    expected = hypergeom(f, n, n).logsf(k - 1)
    assert log_tail(k, f, n) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_log_tail_does_not_underflow_where_the_plain_formula_does():
    f, n, k = 100_000, 500, 400  # a near-perfect overlap: the tail is ~1e-916
    assert hypergeom(f, n, n).sf(k - 1) == 0.0  # the plain value underflows
    value = log_tail(k, f, n)
    assert math.isfinite(value) and value / math.log(10) < -900  # below any float64
    assert value == pytest.approx(hypergeom(f, n, n).logsf(k - 1), rel=1e-9)


def test_corrected_p_is_the_papers_formula():
    for tail in (1e-12, 1e-6, 1e-3, 0.05, 0.4):
        for u in (1, 64, 512):
            expected = 1 - (1 - tail) ** u
            assert math.exp(log_corrected_p(math.log(tail), u)) == pytest.approx(expected, rel=1e-9)
    # tiny tails: p = U * tail to first order, kept in log space
    assert log_corrected_p(-3000.0, 512) == pytest.approx(math.log(512) - 3000.0)


def test_top_n_mask_per_column_and_ties():
    values = np.array([[1, 5], [3, 5], [2, 1], [3, 0]], dtype=float)
    mask = top_n_mask(values, 2)
    assert mask[:, 0].tolist() == [False, True, False, True]
    assert mask[:, 1].tolist() == [True, True, False, False]
    assert top_n_mask(np.array([2.0, 2.0, 2.0]), 1).tolist() == [True, False, False]


def test_top_n_mask_in_blocks_is_the_stable_sort_definition(monkeypatch):
    """Ranked by partition in blocks of columns: the same frames as a stable argsort of
    -values (ties to the earlier frame, or the earlier place in ``tie_order``)."""
    from traitlens.interpret import emergence_stats

    rng = np.random.default_rng(11)
    values = rng.integers(0, 5, (300, 13)).astype(np.float32)  # many ties
    values[:, 3] = 0.0
    values[:7, 4] = -np.inf
    order = rng.permutation(300)
    monkeypatch.setattr(emergence_stats, "_CHUNK_BYTES", 300 * 8 * 4)  # 4 columns a block
    for n in (1, 17, 150, 299, 300):
        expected = np.zeros(values.shape, dtype=bool)
        top = np.argsort(-values, axis=0, kind="stable")[:n]
        np.put_along_axis(expected, top, True, axis=0)
        np.testing.assert_array_equal(top_n_mask(values, n), expected)
        shuffled = np.zeros(values.shape, dtype=bool)
        top = np.argsort(-values[order], axis=0, kind="stable")[:n]
        np.put_along_axis(shuffled, top, True, axis=0)
        expected = np.zeros(values.shape, dtype=bool)
        expected[order] = shuffled
        np.testing.assert_array_equal(top_n_mask(values, n, order), expected)
    with_nan = values.astype(float)
    with_nan[5, 0] = np.nan  # NaN ranks last, as in argsort
    assert not top_n_mask(with_nan, 299)[5, 0]


def test_a_unit_that_follows_the_au_is_found_and_significant():
    rng = np.random.default_rng(0)
    f, u, n = 2000, 64, 50
    au = rng.gamma(2.0, 1.0, f)
    units = rng.normal(size=(f, u))
    units[:, 17] = au + rng.normal(0, 0.2, f)  # a unit tuned to the AU
    result = emergence(au, units, n)
    assert result.unit == 17 and result.i_max > 35
    assert result.p < 1e-30 and (result.n, result.f, result.u) == (n, f, u)
    overlap = int((top_n_mask(au, n) & top_n_mask(units[:, 17], n)).sum())
    assert result.i_max == overlap


def test_unrelated_units_are_not_significant_and_the_null_keeps_its_rate():
    rng = np.random.default_rng(1)
    f, u, n = 1000, 32, 50
    au, units = rng.random(f), rng.random((f, u))
    assert emergence(au, units, n).p > 0.01
    rate = null_false_positive_rate(au, units, n, alpha=0.05, n_perm=100, seed=0)
    assert rate <= 0.10  # analytic p is conservative-to-exact under the null


# --- the rule level: dumps x AU tables -> table, null, figure ---------------------------


def _layers(units: np.ndarray, split_at: int) -> list[tuple[str, int]]:
    return [("conv4_3", i) for i in range(split_at)] + [
        ("conv5_3", i) for i in range(units.shape[1] - split_at)
    ]


def test_table_finds_a_planted_unit_in_any_layer_and_not_noise_aus():
    rng = np.random.default_rng(2)
    f, n = 1500, 60
    aus = ["AU01", "AU02", "AU12"]
    au_values = rng.gamma(2.0, 1.0, (f, 3))
    units = np.maximum(rng.normal(size=(f, 70)), 0)  # post-ReLU: many ties at 0
    units[:, 40 + 7] = au_values[:, 2] + rng.normal(0, 0.3, f)  # conv5_3 unit 7 copies AU12
    table = emergence_table(au_values, units, _layers(units, 40), aus, n, seed=0)
    assert list(table.columns[:8]) == ["au", "unit", "layer", "i_max", "n", "f", "u", "p"]
    assert list(table.columns) == list(TABLE_COLUMNS)
    row = table.set_index("au").loc["AU12"]
    assert (row["layer"], row["unit"]) == ("conv5_3", 7)
    assert row["i_max"] > 40 and row["p"] < 1e-20
    assert (row["n"], row["f"], row["u"]) == (n, f, 70)  # U counts the units of all layers
    assert row["expected_overlap"] == pytest.approx(n * n / f)
    overlap = int((top_n_mask(au_values[:, 2], n) & top_n_mask(units[:, 47], n)).sum())
    assert row["i_max"] == overlap  # AU12 has no ties: same overlap as the plain masks
    assert row["log10_p"] == pytest.approx(math.log10(row["p"]), rel=1e-9)
    noise = table.set_index("au").loc[["AU01", "AU02"]]
    assert (noise["p"] > 0.01).all()


def test_log10_p_stays_finite_where_p_underflows():
    rng = np.random.default_rng(3)
    f, n = 20_000, 400
    au = rng.random((f, 1))
    units = np.column_stack([au[:, 0], rng.random((f, 3))])  # unit 0 = the AU itself
    table = emergence_table(au, units, [("conv5_3", i) for i in range(4)], ["AU01"], n)
    row = table.iloc[0]
    assert row["i_max"] == n and row["p"] == 0.0  # e^-1900: below float64
    expected = log_corrected_p(log_tail(n, f, n), 4) / math.log(10)
    assert math.isfinite(row["log10_p"]) and row["log10_p"] == pytest.approx(expected)
    assert row["log10_p"] < -800


def test_n_top_larger_than_f_is_clamped_and_a_constant_au_has_no_best_unit(caplog):
    rng = np.random.default_rng(4)
    f = 30
    au_values = np.column_stack([rng.random(f), np.zeros(f)])  # AU02 never active
    units = rng.random((f, 5))
    with caplog.at_level(logging.WARNING, logger="traitlens.interpret.au_emergence"):
        table = emergence_table(au_values, units, [("l", i) for i in range(5)], ["A", "B"], 50)
    assert "n_top 50 is larger than the 30 frames" in caplog.text
    assert (table["n"] == 30).all()
    clamped = table.iloc[0]  # N = F: every unit overlaps fully, which means nothing
    assert clamped["i_max"] == 30 and clamped["p"] == pytest.approx(1.0)
    constant = table.iloc[1]
    assert constant["unit"] == -1 and constant["layer"] == "" and constant["p"] == 1.0
    assert "constant" in constant["note"]
    null = null_table(au_values, units, ["A", "B"], 50, 0.05, 20, seed=0, progress=False)
    b = null.set_index("au").loc["B"]
    assert b["n_permutations"] == 0 and math.isnan(b["false_positive_rate"])
    assert null.set_index("au").loc["all", "n_permutations"] == 20  # only A was tested


def test_ties_at_zero_do_not_line_up_between_an_au_and_silent_units():
    # An AU active in 20 of 2000 frames and units active in 10 each: the rest tie at 0.
    # Taking the tied frames in frame order makes every top-N start with the same first
    # frames (a huge spurious overlap); broken at random, the overlap is chance.
    rng = np.random.default_rng(5)
    f, n, u = 2000, 100, 30
    au = np.zeros(f)
    au[rng.choice(f, 20, replace=False)] = rng.random(20) + 0.1
    units = np.zeros((f, u))
    for j in range(u):
        units[rng.choice(f, 10, replace=False), j] = rng.random(10) + 0.1
    in_frame_order = emergence(au, units, n)
    assert in_frame_order.i_max > 70 and in_frame_order.p < 1e-50  # the artefact
    table = emergence_table(au[:, None], units, [("l", j) for j in range(u)], ["AU01"], n)
    row = table.iloc[0]
    assert row["i_max"] < 20 and row["p"] > 0.01
    assert "tie at the N-th value 0" in row["note"]


def test_null_rate_matches_the_analytic_rate_on_noise_and_is_seeded():
    rng = np.random.default_rng(6)
    f, n, u, a = 600, 30, 40, 6
    au_values, units = rng.random((f, a)), rng.random((f, u))
    aus = [f"AU{i:02d}" for i in range(a)]
    alpha, n_perm = 0.2, 300
    null = null_table(au_values, units, aus, n, alpha, n_perm, seed=1, progress=False)
    assert list(null["au"]) == [*aus, "all"]
    pooled = null.set_index("au").loc["all"]
    assert pooled["n_permutations"] == a * n_perm
    # under the null the best of U independent units reaches k* with probability
    # 1 - (1 - tail(k*))^U <= alpha (the p-value is discrete): the rate must match it
    k_star = significance_threshold(f, n, u, alpha)
    expected = math.exp(log_corrected_p(log_tail(k_star, f, n), u))
    assert expected <= alpha
    se = math.sqrt(expected * (1 - expected) / (a * n_perm))
    assert abs(pooled["false_positive_rate"] - expected) < 4 * se + 0.01
    again = null_table(au_values, units, aus, n, alpha, n_perm, seed=1, progress=False)
    pd.testing.assert_frame_equal(null, again)
    other = null_table(au_values, units, aus, n, alpha, n_perm, seed=2, progress=False)
    assert not null["false_positive_rate"].equals(other["false_positive_rate"])


def test_masks_given_by_the_caller_are_the_ones_used():
    """find_au_detectors computes the top-N masks once and passes them to the table and
    both nulls. Values with many ties make the masks depend on the tie-breaking seed."""
    rng = np.random.default_rng(3)
    f, n, u, a = 400, 30, 12, 4
    au_values, units = rng.integers(0, 4, (f, a)) * 1.0, rng.integers(0, 4, (f, u)) * 1.0
    aus, labels = [f"AU{i:02d}" for i in range(a)], [("conv5_3", i) for i in range(u)]
    seed2 = top_n_masks(au_values, units, n, seed=2)
    assert not np.array_equal(seed2[1], top_n_masks(au_values, units, n, seed=1)[1])
    by_seed2 = emergence_table(au_values, units, labels, aus, n, 2)
    assert not by_seed2.equals(emergence_table(au_values, units, labels, aus, n, 1))
    pd.testing.assert_frame_equal(
        by_seed2, emergence_table(au_values, units, labels, aus, n, 1, seed2)
    )
    with pytest.raises(ValueError, match="N = 29"):
        null_table(au_values, units, aus, n - 1, 0.2, 10, 1, progress=False, masks=seed2)


def test_significance_threshold_is_the_first_k_below_alpha():
    f, n, u, alpha = 1000, 50, 64, 0.01
    k = significance_threshold(f, n, u, alpha)
    assert log_corrected_p(log_tail(k, f, n), u) < math.log(alpha)
    assert log_corrected_p(log_tail(k - 1, f, n), u) >= math.log(alpha)
    assert significance_threshold(10, 10, 5, alpha) == 11  # N = F: nothing is significant


def test_null_keeps_its_rate_for_a_planted_au_and_runs_fast():
    rng = np.random.default_rng(7)
    f, u, a = 4000, 256, 17
    au_values = rng.gamma(1.0, 1.0, (f, a))
    units = np.maximum(rng.normal(size=(f, u)), 0).astype(np.float32)
    units[:, 3] = au_values[:, 0] + rng.normal(0, 0.2, f)
    aus = [f"AU{i:02d}" for i in range(a)]
    start = time.perf_counter()
    null = null_table(au_values, units, aus, 100, 0.01, 200, seed=0, progress=False)
    assert time.perf_counter() - start < 10  # 200 permutations x 17 AUs x 4000 x 256
    # shuffling breaks the AU's tie to unit 3: its rate is that of any AU
    assert null.set_index("au").loc["AU00", "false_positive_rate"] <= 0.05
    assert null.set_index("au").loc["all", "false_positive_rate"] <= 0.02


# --- joining the dumps with the AU tables ----------------------------------------------


def _write_dump(path, layer, video_ids, frame_index, unit_max):
    """An activation dump in the spec's layout (keys, reductions, top-K, attrs)."""
    n, u = unit_max.shape
    k, h, w = 2, 2, 2
    top_index = np.argsort(-unit_max, axis=0, kind="stable")[:k].T.astype(np.int64)
    with h5py.File(path, "w") as f:
        f.attrs.update(
            model="face", layer=layer, kind="face", input_size=32, n_frames=n, n_units=u,
            map_height=h, map_width=w, top_k=k, stores_maps=False, created_by="test",
            schema="test dump",
        )  # fmt: skip
        f["video_id"] = np.array(video_ids, dtype=object).astype(h5py.string_dtype())
        f["frame_index"] = np.asarray(frame_index, dtype=np.int32)
        f["split"] = np.array(["test"] * n, dtype=object).astype(h5py.string_dtype())
        f["shard_file"] = np.array(["s000.h5"] * n, dtype=object).astype(h5py.string_dtype())
        f["row"] = np.arange(n, dtype=np.int64)
        f["max"] = unit_max.astype(np.float32)
        f["mean"] = (unit_max / 2).astype(np.float32)
        f["argmax"] = np.zeros((n, u), dtype=np.int32)
        f["top_index"] = top_index
        f["top_value"] = np.take_along_axis(unit_max.T, top_index, axis=1).astype(np.float32)
        f["top_maps"] = np.zeros((u, k, h, w), dtype=np.float16)


def _au_rows(keys, values, success):
    table = pd.DataFrame(keys, columns=["video_id", "frame_index"])
    table["success"] = np.where(success, "true", "false")
    table["AU01"], table["AU12"] = values[:, 0], values[:, 1]
    return table


def test_au_unit_frames_joins_successful_rows_and_concatenates_layers(tmp_path, caplog):
    keys = [("v1", 0), ("v1", 5), ("v2", 0), ("v2", 5), ("v3", 0)]
    ids, frames = zip(*keys, strict=True)
    a = np.arange(10, dtype=float).reshape(5, 2)  # layer conv4_3: 2 units
    b = np.arange(15, dtype=float).reshape(5, 3) + 100  # layer conv5_3: 3 units
    _write_dump(tmp_path / "conv4_3.h5", "conv4_3", ids, frames, a)
    _write_dump(tmp_path / "conv5_3.h5", "conv5_3", ids, frames, b)
    # AU rows: v1/0 ok, v1/5 failed (no face), v2/0 ok but empty AU12, v2/5 ok,
    # v3/0 missing; v4/0 is an AU row the dump does not cover (another split)
    au_keys = [("v2", 5), ("v1", 0), ("v1", 5), ("v2", 0), ("v4", 0)]
    values = np.array([[0.5, 0.6], [0.1, 0.2], [np.nan, np.nan], [0.3, np.nan], [0.9, 0.9]])
    table = _au_rows(au_keys, values, [True, True, False, True, True])
    with caplog.at_level(logging.INFO, logger="traitlens.interpret.au_emergence"):
        au_values, unit_max, labels, videos, frame_index = au_unit_frames(
            [tmp_path / "conv4_3.h5", tmp_path / "conv5_3.h5"], table, ["AU01", "AU12"]
        )
    assert labels == [
        ("conv4_3", 0),
        ("conv4_3", 1),
        ("conv5_3", 0),
        ("conv5_3", 1),
        ("conv5_3", 2),
    ]
    # kept, in dump order: v1/0 (dump row 0) and v2/5 (dump row 3)
    np.testing.assert_allclose(au_values, [[0.1, 0.2], [0.5, 0.6]])
    np.testing.assert_allclose(unit_max, np.hstack([a, b])[[0, 3]])
    assert videos.tolist() == ["v1", "v2"]
    assert frame_index.tolist() == [0, 5]
    assert (
        "2 of 5 dumped frames kept; dropped 1 with no AU row, 1 whose AU row failed (no "
        "face), 1 with an empty AU value; 1 successful AU rows are not in the dump"
    ) in caplog.text


def test_au_unit_frames_refuses_dumps_in_different_frame_orders(tmp_path):
    values = np.ones((3, 2))
    _write_dump(tmp_path / "a.h5", "conv4_3", ["v1", "v1", "v2"], [0, 1, 0], values)
    _write_dump(tmp_path / "b.h5", "conv5_3", ["v1", "v2", "v1"], [0, 0, 1], values)
    table = _au_rows([("v1", 0)], np.ones((1, 2)), [True])
    with pytest.raises(UserError, match=r"b\.h5: its frames are not those of .*a\.h5"):
        au_unit_frames([tmp_path / "a.h5", tmp_path / "b.h5"], table, ["AU01", "AU12"])


def test_join_names_missing_au_columns_and_duplicate_rows():
    keys = pd.DataFrame({"video_id": ["v1"], "frame_index": [0]})
    table = _au_rows([("v1", 0)], np.ones((1, 2)), [True])
    with pytest.raises(UserError, match=r"missing column\(s\) \['AU45'\]"):
        join_frames(keys, table, ["AU01", "AU45"])
    twice = pd.concat([table, table])
    with pytest.raises(UserError, match=r"\(v1, 0\) appears more than once"):
        join_frames(keys, twice, ["AU01"])
    with pytest.raises(UserError, match="no dumped frame has a successful AU row"):
        join_frames(keys, _au_rows([("v1", 0)], np.ones((1, 2)), [False]), ["AU01"])


def test_plot_emergence_writes_a_two_panel_png(tmp_path):
    rng = np.random.default_rng(8)
    au_values = np.column_stack([rng.random(300), np.zeros(300)])
    units = rng.random((300, 6))
    units[:, 2] = au_values[:, 0]
    labels = [("conv5_3", i) for i in range(6)]
    table = emergence_table(au_values, units, labels, ["AU01", "AU45"], 20)
    null = null_table(au_values, units, ["AU01", "AU45"], 20, 0.01, 10, 0, progress=False)
    path = tmp_path / "figures" / "au_emergence.png"
    plot_emergence(table, null, 0.01, path)
    image = plt_image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 500  # two stacked panels
    assert not list(path.parent.glob(".tmp-*"))


def test_entry_writes_table_null_and_figure(tmp_path):
    rng = np.random.default_rng(9)
    n_frames = 400
    ids = [f"v{i // 10}" for i in range(n_frames)]
    frames = [i % 10 for i in range(n_frames)]
    au = rng.random((n_frames, 2))
    a, b = rng.random((n_frames, 8)), rng.random((n_frames, 8))
    b[:, 5] = au[:, 1] + rng.normal(0, 0.05, n_frames)  # conv5_3 unit 5 follows AU12
    _write_dump(tmp_path / "conv4_3.h5", "conv4_3", ids, frames, a)
    _write_dump(tmp_path / "conv5_3.h5", "conv5_3", ids, frames, b)
    table = _au_rows(list(zip(ids, frames, strict=True)), au, np.ones(n_frames, dtype=bool))
    for col in (
        "AU02",
        "AU04",
        "AU05",
        "AU06",
        "AU07",
        "AU09",
        "AU10",
        "AU11",
        "AU14",
        "AU15",
        "AU17",
        "AU20",
        "AU23",
        "AU24",
        "AU25",
        "AU26",
        "AU28",
        "AU43",
        "AU45",
    ):
        table[col] = 0.0  # fmt: skip
    table.iloc[:200].to_csv(tmp_path / "s000.tsv", sep="\t", index=False)
    table.iloc[200:].to_csv(tmp_path / "s001.tsv", sep="\t", index=False)
    # 40 videos of 10 persons (4 videos each): the manifest's group column
    manifest = pd.DataFrame({"video_id": [f"v{i}" for i in range(40)], "split": "test"})
    manifest["group"] = [f"p{i // 4}" for i in range(40)]
    manifest.to_csv(tmp_path / "manifest.tsv", sep="\t", index=False)
    out = tmp_path / "out"
    sm = type("Snakemake", (), {})()
    sm.input = Namedlist(
        fromdict={
            "dumps": [str(tmp_path / "conv4_3.h5"), str(tmp_path / "conv5_3.h5")],
            "aus": [str(tmp_path / "s000.tsv"), str(tmp_path / "s001.tsv")],
            "manifest": str(tmp_path / "manifest.tsv"),
        }
    )
    sm.output = Namedlist(
        fromdict={
            "table": str(out / "au_emergence.tsv"),
            "null": str(out / "au_emergence_null.tsv"),
            "figure": str(out / "au_emergence.png"),
        }
    )
    settings = {"aus": ["AU01", "AU12", "AU45"], "n_top": 40, "alpha": 0.01,
                "n_permutations": 50, "cluster_permutations": 500,
                "cluster_null_draws": 5, "seed": 0}  # fmt: skip
    sm.params = Namedlist(fromdict={"au_emergence": settings})
    sm.log = [str(tmp_path / "find_au_detectors.log")]
    entry = Path(__file__).resolve().parents[1] / "workflow_scripts" / "find_au_detectors.py"
    runpy.run_path(str(entry), init_globals={"snakemake": sm}, run_name="__main__")
    written = pd.read_csv(out / "au_emergence.tsv", sep="\t", keep_default_na=False)
    aus = ["AU01", "AU12", "AU45"]
    assert list(written["au"]) == [*aus, *(f"{a}_decoy" for a in aus)]
    assert list(written.columns) == list(TABLE_COLUMNS)
    au12 = written.set_index("au").loc["AU12"]
    assert (au12["layer"], int(au12["unit"]), int(au12["u"])) == ("conv5_3", 5, 16)
    assert float(au12["p"]) < 1e-10 and float(au12["p"]) > 0  # %.6g keeps a small p
    # the verdict: no permutation of whole videos within a person reaches AU12's overlap
    assert float(au12["p_perm"]) == pytest.approx(1 / 501, rel=1e-5)  # %.6g
    assert au12["significant"] and int(au12["n_perm"]) == 500
    assert au12["permutation"] == "whole videos within group"
    assert int(au12["n_movable_videos"]) == 40
    decoy = written.set_index("au").loc["AU12_decoy"]
    assert not decoy["significant"] and float(decoy["p_perm"]) > 0.01
    au45 = written.set_index("au").loc["AU45"]  # all zero: constant, no best unit
    assert int(au45["unit"]) == -1 and au45["layer"] == "" and "constant" in au45["note"]
    assert au45["p_perm"] == "" and au45["q_bh"] == "" and not au45["significant"]
    null = pd.read_csv(out / "au_emergence_null.tsv", sep="\t")
    assert list(null["au"]) == ["AU01", "AU12", "AU45", "all"]
    assert null.set_index("au").loc["all", "n_permutations"] == 100
    # the verdict's null: 5 null data sets, the constant AU45 not tested
    cluster = null.set_index("au")["cluster_false_positive_rate"]
    assert np.isnan(cluster["AU45"]) and 0.0 <= cluster["all"] <= 0.2
    assert (null["cluster_null_draws"] == 5).all()
    assert (out / "au_emergence.png").stat().st_size > 10_000
    assert (
        "null false-positive rate over all AUs" in (tmp_path / "find_au_detectors.log").read_text()
    )


def test_group_shuffle_moves_frames_only_within_their_group():
    from traitlens.interpret.au_emergence import _group_shuffler

    groups = np.array(["b", "a", "b", "c", "a", "b"])
    shuffle = _group_shuffler(groups, len(groups))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        perm = shuffle(rng)
        assert sorted(perm.tolist()) == list(range(6))  # a permutation
        assert (groups[perm] == groups).all()  # every frame lands in its own group
        seen.add(tuple(perm))
    assert len(seen) > 1  # and it does shuffle


def test_within_video_null_exposes_a_video_level_confound():
    """An AU whose level is a property of the video (no frame-level link) and a unit that
    tells the videos apart: the global null calls the overlap rare, the within-video null
    does not."""
    rng = np.random.default_rng(3)
    n_videos, per_video = 40, 25
    videos = np.repeat(np.arange(n_videos), per_video)
    level = rng.random(n_videos)
    au = (level[videos] + 0.01 * rng.standard_normal(len(videos)))[:, None]
    units = np.column_stack(
        [level[videos] + 0.01 * rng.standard_normal(len(videos)),  # video-selective unit
         rng.standard_normal((len(videos), 9))]
    )  # fmt: skip
    table = emergence_table(au, units, [("l", u) for u in range(10)], ["AU01"], 50)
    assert table.loc[0, "p"] < 1e-10 and table.loc[0, "unit"] == 0
    common = (au, units, ["AU01"], 50, 0.01, 50)
    global_null = null_table(*common, seed=0, progress=False)
    within = null_table(*common, seed=0, progress=False, groups=videos)
    assert global_null.loc[0, "false_positive_rate"] <= 0.05
    assert within.loc[0, "false_positive_rate"] >= 0.9
