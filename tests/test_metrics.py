"""Trait metrics (accuracy, r, CCC, R^2) and the bootstrap over videos."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from traitlens.evaluation.bootstrap import (
    bootstrap_mean_accuracy,
    paired_bootstrap,
    resampled_means,
)
from traitlens.evaluation.metrics import (
    ccc,
    mean_accuracy,
    pearson_r,
    r2,
    trait_accuracy,
    trait_metrics,
    video_accuracy,
)

PRED = np.array([[0.5, 0.2], [0.6, 0.4], [0.9, 0.4], [0.3, 0.8]])
LABEL = np.array([[0.4, 0.2], [0.7, 0.1], [0.8, 0.5], [0.3, 0.6]])


def _random(n: int, seed: int = 1, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.uniform(0.2, 0.8, size=(n, 5))
    return np.clip(label + rng.normal(0, noise, size=(n, 5)), 0, 1), label


def test_accuracy_by_hand():
    # |errors| column 0: .1 .1 .1 0 -> MAE .075; column 1: 0 .3 .1 .2 -> MAE .15
    np.testing.assert_allclose(trait_accuracy(PRED, LABEL), [0.925, 0.85])
    assert mean_accuracy(PRED, LABEL) == pytest.approx(0.8875)
    np.testing.assert_allclose(video_accuracy(PRED, LABEL), [0.95, 0.8, 0.9, 0.9])
    assert video_accuracy(PRED, LABEL).mean() == pytest.approx(mean_accuracy(PRED, LABEL))


def test_pearson_matches_scipy():
    pred, label = _random(50)
    expected = [pearsonr(pred[:, j], label[:, j])[0] for j in range(5)]
    np.testing.assert_allclose(pearson_r(pred, label), expected, rtol=1e-12)


def test_r2_by_hand_and_sklearn():
    # column 0: SS_res = .01+.01+.01+0 = .03; mean .55, SS_tot = .0225+.0225+.0625+.0625 = .17
    assert r2(PRED, LABEL)[0] == pytest.approx(1 - 0.03 / 0.17)
    pred, label = _random(40)
    expected = [r2_score(label[:, j], pred[:, j]) for j in range(5)]
    np.testing.assert_allclose(r2(pred, label), expected, rtol=1e-12)


def test_ccc_by_hand_perfect_and_shifted():
    p, lab = PRED[:, :1], LABEL[:, :1]
    mp, ml = p.mean(), lab.mean()
    cov = ((p - mp) * (lab - ml)).mean()
    expected = 2 * cov / (p.var() + lab.var() + (mp - ml) ** 2)
    assert ccc(p, lab)[0] == pytest.approx(expected)

    pred, label = _random(60)
    np.testing.assert_allclose(ccc(label, label), 1.0)
    shifted = label + 0.1
    np.testing.assert_allclose(pearson_r(shifted, label), 1.0)
    assert (ccc(shifted, label) < pearson_r(shifted, label)).all()
    assert (ccc(pred, label) <= np.abs(pearson_r(pred, label)) + 1e-12).all()


def test_constant_prediction_is_nan_safe():
    _, label = _random(30)
    const = np.tile([0.1, 0.3, 0.5, 0.7, 0.9], (30, 1))
    with np.errstate(all="raise"):  # no division warnings either
        m = trait_metrics(const, label)
    assert np.isnan(m["pearson_r"]).all()
    np.testing.assert_array_equal(m["ccc"], 0.0)
    assert np.isfinite(m["r2"]).all() and (m["r2"] < 0).all()
    # constant labels leave R^2 (and r) undefined, CCC defined unless both equal
    assert np.isnan(r2(label, const)).all()
    assert np.isnan(ccc(const, const)).all()


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="shape"):
        trait_accuracy(PRED, LABEL[:3])


def test_bootstrap_ci_contains_estimate_and_narrows():
    pred, label = _random(100)
    small = bootstrap_mean_accuracy(pred, label, n_boot=500, seed=0)
    assert small.estimate == pytest.approx(mean_accuracy(pred, label))
    assert small.low < small.estimate < small.high
    big = bootstrap_mean_accuracy(*_random(2000), n_boot=500, seed=0)
    assert big.low < big.estimate < big.high
    assert big.high - big.low < 0.5 * (small.high - small.low)


def test_bootstrap_reproducible_and_seeded():
    pred, label = _random(80)
    a = bootstrap_mean_accuracy(pred, label, n_boot=300, confidence=0.9, seed=3)
    assert a == bootstrap_mean_accuracy(pred, label, n_boot=300, confidence=0.9, seed=3)
    assert a != bootstrap_mean_accuracy(pred, label, n_boot=300, confidence=0.9, seed=4)
    wider = bootstrap_mean_accuracy(pred, label, n_boot=300, confidence=0.99, seed=3)
    assert wider.low < a.low and wider.high > a.high


def test_resampling_does_not_depend_on_chunk_size():
    values = np.random.default_rng(0).uniform(size=37)
    whole = resampled_means(values, 50, seed=5)
    np.testing.assert_array_equal(whole, resampled_means(values, 50, seed=5, chunk_elements=37))
    np.testing.assert_array_equal(whole, resampled_means(values, 50, seed=5, chunk_elements=100))


def test_paired_bootstrap_better_model_is_significant():
    good, label = _random(300, noise=0.05)
    bad = np.clip(label + np.random.default_rng(9).normal(0, 0.15, size=label.shape), 0, 1)
    cmp = paired_bootstrap(good, bad, label, n_boot=1000, seed=0)
    assert cmp.diff == pytest.approx(mean_accuracy(good, label) - mean_accuracy(bad, label))
    assert 0 < cmp.low < cmp.diff < cmp.high
    assert cmp.p_value < 0.01
    assert cmp.p_value == pytest.approx(1 / 1001)  # the floor: no resample crossed 0
    assert (cmp.n_videos, cmp.n_boot) == (300, 1000)
    reverse = paired_bootstrap(bad, good, label, n_boot=1000, seed=0)
    assert reverse.diff == pytest.approx(-cmp.diff) and reverse.p_value == cmp.p_value


def test_paired_bootstrap_identical_models():
    pred, label = _random(50)
    cmp = paired_bootstrap(pred, pred.copy(), label, n_boot=200, seed=0)
    assert (cmp.diff, cmp.low, cmp.high, cmp.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_no_real_difference_is_not_significant():
    label = np.random.default_rng(2).uniform(0.2, 0.8, size=(400, 5))
    noise = np.random.default_rng(3).normal(0, 0.1, size=(2, 400, 5))
    cmp = paired_bootstrap(label + noise[0], label + noise[1], label, n_boot=1000, seed=0)
    assert cmp.low < 0 < cmp.high
    assert cmp.p_value > 0.05


@pytest.mark.parametrize("kwargs", [{"n_boot": 0}, {"confidence": 1.0}, {"confidence": 0}])
def test_bootstrap_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        bootstrap_mean_accuracy(PRED, LABEL, **kwargs)
