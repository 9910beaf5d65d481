"""The cluster-aware AU-emergence test (docs/method.md §5): whole videos' AU tracks moved
within their person, Benjamini-Hochberg, decoy tracks, and the table's new columns.

Simulated data are clustered as First Impressions is: frames within videos, videos
within people. The negative control is the case the paper's p gets wrong (it treats
frames as independent); the positive control is a unit that follows the AU frame by
frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.interpret.au_emergence import (
    DECOY_SUFFIX,
    TABLE_COLUMNS,
    emergence_table,
    video_groups,
)
from traitlens.interpret.emergence_stats import (
    benjamini_hochberg,
    cluster_permutation_p,
    decoy_tracks,
    top_n_mask,
    video_track_permutation,
)

from support.clustered_frames import clustered

PAPER_COLUMNS = ["au", "unit", "layer", "i_max", "n", "f", "u", "p", "log10_p", "expected_overlap"]


def _table(au, units, videos, groups, order, n_perm=199, alpha=0.05, **kw):
    labels = [("conv5_3", j) for j in range(units.shape[1])]
    aus = [f"AU{j:02d}" for j in range(au.shape[1])]
    return emergence_table(au, units, labels, aus, 100, 0, videos=videos, groups=groups,
                           frame_order=order, n_perm=n_perm, alpha=alpha, **kw)  # fmt: skip


# --- negative and positive controls ----------------------------------------------------


def test_no_association_in_clustered_data_fools_the_papers_p_but_not_the_permutation():
    paper, perm, decoy = [], [], []
    for seed in range(20):
        videos, groups, order, au, units = clustered(seed, a=5)
        table = _table(au, units, videos, groups, order, n_perm=99)
        real = ~table["au"].str.endswith(DECOY_SUFFIX)
        paper += list(table.loc[real, "p"] < 0.05)
        perm += list(table.loc[real, "p_perm"] < 0.05)
        decoy += list(table.loc[~real, "p_perm"] < 0.05)
    # the scenario is hard: frames treated as independent, most AUs look significant
    assert np.mean(paper) > 0.5
    # whole videos moved within their person: the rate stays near alpha
    assert np.mean(perm) <= 0.1 and np.mean(decoy) <= 0.1


def test_a_unit_that_follows_the_au_frame_by_frame_is_significant():
    videos, groups, order, au, units = clustered(100, a=3, u=64)
    rng = np.random.default_rng(1)
    units[:, 9] = au[:, 1] + rng.standard_normal(len(au))  # noisy copy, frame noise sd 1
    table = _table(au, units, videos, groups, order, n_perm=999, alpha=0.01).set_index("au")
    row = table.loc["AU01"]
    assert row["unit"] == 9 and row["p_perm"] == pytest.approx(1 / 1000)
    assert row["q_bh"] <= 3 / 1000 and row["significant"]
    # its decoy (the same tracks, given to other videos of the person) is not
    assert not table.loc["AU01_decoy", "significant"] and table.loc["AU01_decoy", "p_perm"] > 0.01


def test_permutation_p_uses_the_image_of_the_marked_frames():
    """Moving the AU's top-N frames with sigma gives the top N of the values moved as
    whole tracks by sigma's inverse: the trick that avoids sorting per permutation."""
    videos, groups, order, au, units = clustered(3, a=1, u=8)
    permutation = video_track_permutation(videos, groups, order)
    sigma = permutation.video_maps(np.random.default_rng(0))[0]
    inverse = np.argsort(sigma)
    moved_values = au[permutation.frames_of(inverse, np.arange(len(au))), 0]
    marked = np.flatnonzero(top_n_mask(au[:, 0], 100))
    assert set(permutation.frames_of(sigma, marked)) == set(
        np.flatnonzero(top_n_mask(moved_values, 100))
    )
    # and the observed I_max is the paper's
    au_mask, unit_mask = top_n_mask(au, 100), top_n_mask(units, 100)
    p, observed = cluster_permutation_p(au_mask, unit_mask, permutation, 20, 0)
    assert observed[0] == (au_mask[:, [0]] & unit_mask).sum(axis=0).max()
    assert 1 / 21 <= p[0] <= 1


def test_permutation_p_is_seeded_and_checks_its_input():
    videos, groups, order, au, units = clustered(4, a=2, u=16)
    permutation = video_track_permutation(videos, groups, order)
    au_mask, unit_mask = top_n_mask(au, 50), top_n_mask(units, 50)
    first = cluster_permutation_p(au_mask, unit_mask, permutation, 50, 7)[0]
    np.testing.assert_array_equal(
        first, cluster_permutation_p(au_mask, unit_mask, permutation, 50, 7)[0]
    )
    with pytest.raises(ValueError, match="same number of frames"):
        uneven = au_mask.copy()
        uneven[np.flatnonzero(~uneven[:, 0])[0], 0] = True
        cluster_permutation_p(uneven, unit_mask, permutation, 10, 0)
    with pytest.raises(ValueError, match="n_perm"):
        cluster_permutation_p(au_mask, unit_mask, permutation, 0, 0)


def _brute_force_p(au, units, n, permutation, n_perm, seed):
    """The permutation p the slow way: the AU's values moved as whole tracks, re-ranked."""
    unit_mask = top_n_mask(units, n)
    observed = (top_n_mask(au, n)[:, None] & unit_mask).sum(axis=0).max()
    rng = np.random.default_rng(seed)
    reached = sum(
        (top_n_mask(au[permutation(rng)], n)[:, None] & unit_mask).sum(axis=0).max() >= observed
        for _ in range(n_perm)
    )
    return (1 + reached) / (1 + n_perm), observed


@pytest.mark.parametrize("case", ["no video can move", "N is every frame"])
def test_permutation_p_is_exactly_one_when_no_permutation_can_move_the_top_n(case):
    """Either case returns at once without drawing; the p must still be what drawing gives
    (1): checked against the slow recomputation. Negative control: the same data with
    videos that can move, and N below F, give p < 1."""
    videos, groups, order, au, units = clustered(5, a=1, u=16)
    n = len(au) if case == "N is every frame" else 60
    if case == "no video can move":
        groups = videos  # each video its own group: alone in its stratum
    permutation = video_track_permutation(videos, groups, order)
    assert (permutation.n_movable_videos == 0) == (case == "no video can move")
    units[:, 3] = au[:, 0]  # a perfect detector: any real permutation lowers its overlap
    p, observed = cluster_permutation_p(top_n_mask(au, n), top_n_mask(units, n), permutation,
                                        40, 0)  # fmt: skip
    assert (p[0], observed[0]) == _brute_force_p(au[:, 0], units, n, permutation, 40, 0)
    assert p[0] == 1.0
    movable = video_track_permutation(videos, None, order)
    p_moving, _ = cluster_permutation_p(top_n_mask(au, 60), top_n_mask(units, 60), movable, 40, 0)
    assert p_moving[0] == pytest.approx(1 / 41)


# --- the sampler -----------------------------------------------------------------------


def _toy_frames():
    """Videos of groups g (a, b, c: 3 frames; d: 2 frames), h (e: 3 frames, alone) and
    k (f, g: 3 frames), frames shuffled, frame_index not in array order."""
    spec = {"a": ("g", 3), "b": ("g", 3), "c": ("g", 3), "d": ("g", 2), "e": ("h", 3),
            "f": ("k", 3), "g": ("k", 3)}  # fmt: skip
    rows = [(v, grp, 10 * k + 5) for v, (grp, n) in spec.items() for k in range(n)]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    videos, groups, order = (np.array(c) for c in zip(*rows, strict=True))
    return videos, groups, order


def test_sampler_moves_whole_tracks_in_order_within_group_and_length():
    videos, groups, order = _toy_frames()
    permutation = video_track_permutation(videos, groups, order)
    assert permutation.n_videos == 7 and permutation.n_movable_videos == 5  # not d, not e
    rng = np.random.default_rng(1)
    sources = set()
    for _ in range(200):
        perm = permutation(rng)
        assert sorted(perm) == list(range(len(videos)))  # a permutation of the frames
        for v in np.unique(videos):
            frames = np.flatnonzero(videos == v)
            frames = frames[np.argsort(order[frames])]  # the video's track, in order
            src = perm[frames]
            (source,) = set(videos[src])  # every frame from one video ...
            assert groups[src][0] == groups[frames][0]  # ... of the same group ...
            assert (videos == source).sum() == len(frames)  # ... and length ...
            np.testing.assert_array_equal(order[src], order[frames])  # ... k-th to k-th
            if v in ("d", "e"):
                assert source == v  # alone in its stratum: stays put
            sources.add((v, source))
    assert {("a", "b"), ("a", "c"), ("a", "a"), ("f", "g"), ("f", "f")} <= sources


def test_sampler_without_groups_moves_videos_over_the_data_set():
    videos, _, order = _toy_frames()
    permutation = video_track_permutation(videos, None, order)
    assert permutation.n_movable_videos == 6  # d is the only 2-frame video
    with pytest.raises(ValueError, match="different groups"):
        video_track_permutation(np.array(["a", "a"]), np.array(["g", "h"]))


# --- Benjamini-Hochberg ------------------------------------------------------------------


def test_bh_against_a_hand_computed_example():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5, 0.04])
    # m = 5 finite; sorted 0.01 0.03 0.04 0.04 0.5 -> x 5/rank: 0.05 0.075 0.0667 0.05 0.5
    # then the running minimum from the top: 0.05 0.05 0.05 0.05 0.5
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q, [0.05, 0.05, 0.05, np.nan, 0.5, 0.05])
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    assert benjamini_hochberg([0.9, 0.95]).max() <= 1.0


def _statsmodels_fdr_bh(p: np.ndarray) -> np.ndarray:
    """statsmodels.stats.multitest.multipletests(method='fdr_bh') written out."""
    order = np.argsort(p)
    sorted_p = p[order]
    ecdf = np.arange(1, len(p) + 1) / len(p)
    raw = sorted_p / ecdf
    corrected = np.minimum.accumulate(raw[::-1])[::-1]
    corrected[corrected > 1] = 1
    out = np.empty_like(corrected)
    out[order] = corrected
    return out


def test_bh_matches_statsmodels_definition_and_skips_nan():
    rng = np.random.default_rng(2)
    for _ in range(20):
        p = np.concatenate([rng.random(15) ** 3, rng.random(5)])
        np.testing.assert_allclose(benjamini_hochberg(p), _statsmodels_fdr_bh(p))
        with_nan = p.copy()
        with_nan[[2, 7]] = np.nan
        q = benjamini_hochberg(with_nan)
        keep = np.isfinite(with_nan)
        assert np.isnan(q[~keep]).all()
        np.testing.assert_allclose(q[keep], _statsmodels_fdr_bh(p[keep]))


# --- decoys ------------------------------------------------------------------------------


def test_decoys_come_from_another_video_of_the_same_group():
    videos, groups, order = _toy_frames()
    values = np.arange(len(videos), dtype=float)  # a frame's value names the frame
    for seed in range(50):
        decoy, kept = decoy_tracks(values, videos, groups, np.random.default_rng(seed), order)
        assert set(videos[~kept]) == {"d", "e"}  # no partner: dropped
        assert np.isnan(decoy[~kept]).all()
        source = decoy[kept].astype(int)
        assert (videos[source] != videos[kept]).all()  # never its own track
        assert (groups[source] == groups[kept]).all()
        np.testing.assert_array_equal(order[source], order[kept])  # k-th frame to k-th
        for v in np.unique(videos[kept]):  # one source video per video
            assert len(set(videos[source[videos[kept] == v]])) == 1


# --- the table ---------------------------------------------------------------------------


def test_table_gains_the_verdict_columns_and_keeps_the_papers():
    videos, groups, order, au, units = clustered(5, a=2, u=20)
    units[:, 4] = au[:, 0] + 0.3 * np.random.default_rng(0).standard_normal(len(au))
    labels = [("conv5_3", j) for j in range(20)]
    plain = emergence_table(au, units, labels, ["AU01", "AU02"], 100)
    assert list(plain.columns) == list(TABLE_COLUMNS)
    assert plain["p_perm"].isna().all() and plain["q_bh"].isna().all()
    assert not plain["significant"].any() and (plain["permutation"] == "").all()
    assert plain["note"].str.contains("no videos given").all()
    table = emergence_table(au, units, labels, ["AU01", "AU02"], 100, videos=videos,
                            groups=groups, frame_order=order, n_perm=99, alpha=0.05)  # fmt: skip
    assert list(table["au"]) == ["AU01", "AU02", "AU01_decoy", "AU02_decoy"]
    # the paper's columns of the real AUs are those of the table without videos
    pd.testing.assert_frame_equal(table[PAPER_COLUMNS].iloc[:2], plain[PAPER_COLUMNS])
    assert (table["permutation"] == "whole videos within group").all()
    assert (table["n_perm"] == 99).all() and (table["n_movable_videos"] == 400).all()
    au01 = table.set_index("au").loc["AU01"]
    assert au01["unit"] == 4 and au01["p_perm"] == pytest.approx(0.01) and au01["significant"]
    # two BH families: the real AUs, and the decoys
    np.testing.assert_allclose(table["q_bh"][:2], benjamini_hochberg(table["p_perm"][:2]))
    np.testing.assert_allclose(table["q_bh"][2:], benjamini_hochberg(table["p_perm"][2:]))
    ungrouped = emergence_table(au, units, labels, ["AU01", "AU02"], 100, videos=videos, n_perm=9)
    assert (ungrouped["permutation"] == "whole videos (no groups)").all()


def test_table_with_singleton_groups_cannot_move_anything(caplog):
    videos, _, order, au, units = clustered(6, a=1, u=8)
    with caplog.at_level("WARNING", logger="traitlens.interpret.au_emergence"):
        table = _table(au, units, videos, videos, order, n_perm=19)  # each video its own group
    assert "no video can move" in caplog.text
    assert (table["n_movable_videos"] == 0).all()
    assert table.loc[0, "p_perm"] == 1.0 and not table["significant"].any()
    assert table.loc[1, "unit"] == -1  # the decoy has no frame left: not tested
    assert np.isnan(table.loc[1, "p_perm"])
    with pytest.raises(UserError, match="cluster_permutations"):
        _table(au, units, videos, videos, order, n_perm=0)


def test_video_groups_from_the_manifest(tmp_path, caplog):
    path = tmp_path / "manifest.tsv"
    pd.DataFrame({"video_id": ["v1", "v2", "v3"], "group": ["p1", "p1", "NA"]}).to_csv(
        path, sep="\t", index=False
    )
    groups = video_groups(path, np.array(["v2", "v1", "v3", "v2"]))
    assert groups.tolist() == ["p1", "p1", "NA", "p1"]  # a group may be spelled NA
    with pytest.raises(UserError, match=r"manifest\.tsv: 1 video\(s\) .* not in the manifest"):
        video_groups(path, np.array(["v1", "v9"]))
    # a manifest from before the group column: warned, videos move over the data set
    pd.DataFrame({"video_id": ["v1"], "split": ["test"]}).to_csv(path, sep="\t", index=False)
    with caplog.at_level("WARNING", logger="traitlens.interpret.au_emergence"):
        assert video_groups(path, np.array(["v1"])) is None
    assert "no group column" in caplog.text


def test_cluster_null_rate_is_near_alpha_and_the_within_person_shuffle_would_not_be():
    """The verdict's own null (tracks given to random videos of the whole data set, then
    the within-person test): its rate sits near alpha even where a unit truly follows an
    AU, because the null tracks lose that tie. The negative control: the paper's test on
    the same null data sets fires far above alpha, since person and video levels make
    any AU's top frames cluster in a few videos."""
    from traitlens.interpret.au_emergence import cluster_null_rates, null_table

    videos, groups, order, au, units = clustered(7, a=4, u=64)
    units[:, 3] = au[:, 0] + np.random.default_rng(2).standard_normal(len(au))
    aus = [f"AU{j:02d}" for j in range(au.shape[1])]
    rates, pooled = cluster_null_rates(
        au, units, aus, 100, 0.05, 40, 99, 0, videos=videos, groups=groups, frame_order=order
    )
    # 160 tests at alpha 0.05: about 8 should fire; none would say the null is broken
    assert rates.shape == (4,) and 0.01 <= pooled <= 0.12, (rates, pooled)
    # the paper's null with frames shuffled only within their video keeps the clustering
    # of the AU's top frames: it shows how often the paper's p fires on such data
    within = null_table(au, units, aus, 100, 0.05, 40, 0, progress=False, groups=videos)
    assert within["false_positive_rate"].iloc[-1] > 0.5
    constant = np.column_stack([au[:, :1], np.zeros(len(au))])
    rates, _ = cluster_null_rates(
        constant, units, aus[:2], 100, 0.05, 3, 19, 0, videos=videos, groups=groups
    )
    assert np.isnan(rates[1]) and np.isfinite(rates[0])
