"""The cluster bootstrap: groups (persons) resampled with all their videos.

Controls by coverage: on errors clustered within persons, the bootstrap over videos
covers the true mean accuracy far less often than its nominal level (the negative
control), the cluster bootstrap about as often (the positive control).
"""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.evaluation.bootstrap import (
    bootstrap_mean_accuracy,
    count_groups,
    paired_bootstrap,
    resampled_means,
)
from traitlens.evaluation.metrics import video_accuracy

N_GROUPS, PER_GROUP, N_SIMS, N_BOOT = 60, 5, 300, 500
GROUPS = np.repeat(np.arange(N_GROUPS), PER_GROUP)
# person effect sd twice the video sd: an intra-person correlation of 0.8
PERSON_SD, VIDEO_SD = 0.02, 0.01


def _clustered_error(rng: np.random.Generator, mean: float) -> np.ndarray:
    return (
        mean
        + rng.normal(0, PERSON_SD, N_GROUPS)[GROUPS]
        + rng.normal(0, VIDEO_SD, N_GROUPS * PER_GROUP)
    )


def test_coverage_of_the_true_mean_accuracy():
    label = np.full((N_GROUPS * PER_GROUP, 5), 0.3)
    covered = {"videos": 0, "persons": 0}
    for sim in range(N_SIMS):
        # errors of 0.15 +- 0.022 never change sign, so the true mean accuracy is 0.85
        pred = label + _clustered_error(np.random.default_rng(sim), 0.15)[:, None]
        for unit, groups in (("videos", None), ("persons", GROUPS)):
            ci = bootstrap_mean_accuracy(pred, label, N_BOOT, 0.95, seed=sim, groups=groups)
            covered[unit] += ci.low <= 0.85 <= ci.high
    coverage = {unit: n / N_SIMS for unit, n in covered.items()}
    assert coverage["videos"] < 0.85, coverage  # about 0.65: too narrow
    assert 0.90 <= coverage["persons"] <= 0.99, coverage


def test_paired_comparison_false_positives():
    """Model A is as good as B on average but better for some persons, worse for others."""
    label = np.full((N_GROUPS * PER_GROUP, 5), 0.5)
    rejected = {"videos": 0, "persons": 0}
    for sim in range(N_SIMS):
        pred_a = label + _clustered_error(np.random.default_rng(sim), 0.1)[:, None]
        pred_b = label + 0.1
        for unit, groups in (("videos", None), ("persons", GROUPS)):
            cmp = paired_bootstrap(pred_a, pred_b, label, N_BOOT, seed=sim, groups=groups)
            rejected[unit] += cmp.p_value < 0.05
    rate = {unit: n / N_SIMS for unit, n in rejected.items()}
    assert rate["videos"] > 0.2, rate  # about 0.35 at a nominal 0.05
    assert rate["persons"] <= 0.1, rate


def test_singleton_groups_are_exactly_the_video_bootstrap():
    rng = np.random.default_rng(4)
    label = rng.uniform(0.2, 0.8, (50, 5))
    pred_a, pred_b = (label + rng.normal(0, s, (50, 5)) for s in (0.05, 0.08))
    singletons = np.array([f"person {i}" for i in rng.permutation(50)])  # any names, order
    for groups in (None, singletons):
        assert bootstrap_mean_accuracy(pred_a, label, 300, seed=2, groups=groups) == (
            bootstrap_mean_accuracy(pred_a, label, 300, seed=2)
        )
        assert paired_bootstrap(pred_a, pred_b, label, 300, seed=2, groups=groups) == (
            paired_bootstrap(pred_a, pred_b, label, 300, seed=2)
        )
    assert count_groups(singletons, 50) == count_groups(None, 50) == 50
    # negative control: pairs of videos are a different resampling
    pairs = np.repeat(np.arange(25), 2)
    assert bootstrap_mean_accuracy(pred_a, label, 300, seed=2, groups=pairs) != (
        bootstrap_mean_accuracy(pred_a, label, 300, seed=2)
    )
    assert paired_bootstrap(pred_a, pred_b, label, 300, seed=2, groups=pairs).n_groups == 25


def test_paired_comparison_draws_the_same_groups_for_both_models():
    rng = np.random.default_rng(5)
    label = rng.uniform(0.2, 0.8, (90, 5))
    acc_a, acc_b = (video_accuracy(label + rng.normal(0, 0.1, (90, 5)), label) for _ in "ab")
    groups = rng.integers(0, 20, 90)
    paired = resampled_means(acc_a - acc_b, 400, seed=3, groups=groups)
    same = resampled_means(acc_a, 400, 3, groups=groups) - resampled_means(
        acc_b, 400, 3, groups=groups
    )
    np.testing.assert_allclose(paired, same, atol=1e-12)
    other = resampled_means(acc_a, 400, 3, groups=groups) - resampled_means(
        acc_b, 400, 4, groups=groups
    )
    assert np.abs(paired - other).max() > 1e-3  # independent draws would not match


def test_a_resample_takes_all_videos_of_each_drawn_group():
    """Against a literal implementation: unequal groups, named in any order."""
    rng = np.random.default_rng(6)
    names = np.array(["carol", "alice", "bob", "dave"])
    groups = names[[0, 0, 0, 1, 2, 2, 3, 1, 0]]  # sizes 4, 2, 2, 1
    values = rng.uniform(size=groups.shape[0])
    got = resampled_means(values, 50, seed=9, groups=groups)
    order = np.unique(groups)  # groups are numbered in sorted order
    draws = np.random.default_rng(9).integers(0, len(order), size=(50, len(order)))
    expected = [np.concatenate([values[groups == order[g]] for g in row]).mean() for row in draws]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_grouped_resampling_does_not_depend_on_chunk_size():
    values = np.random.default_rng(0).uniform(size=37)
    groups = np.arange(37) % 11
    whole = resampled_means(values, 50, seed=5, groups=groups)
    for chunk in (11, 30, 100):
        np.testing.assert_array_equal(
            whole, resampled_means(values, 50, seed=5, chunk_elements=chunk, groups=groups)
        )


def test_groups_must_match_the_videos():
    values = np.zeros(10)
    with pytest.raises(ValueError, match="one group per video"):
        resampled_means(values, 10, seed=0, groups=np.zeros(9))
