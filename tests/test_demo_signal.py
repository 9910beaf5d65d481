"""Planted signal: AU trajectories, trait formulas and their spread (no rendering)."""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.demo import signal
from traitlens.demo.plan import DemoConfig, plan_videos

from support.workflow_config import DEMO_TEST_CONFIG

DEFAULT = DEMO_TEST_CONFIG


@pytest.fixture(scope="module")
def signals():
    cfg = DemoConfig.from_mapping(DEFAULT)
    return [signal.video_signal(v, cfg) for v in plan_videos(cfg)]


def test_trait_spread_like_first_impressions(signals):
    for trait in signal.TRAITS:
        values = np.array([s.traits[trait] for s in signals])
        assert 0.0 <= values.min() and values.max() <= 1.0
        assert 0.44 <= values.mean() <= 0.56, trait
        assert 0.09 <= values.std() <= 0.16, (trait, values.std())


def test_traits_follow_the_documented_formulas(signals):
    for s in signals:
        drivers = {**s.au_mean, **{k: s.audio[k] for k in signal.AUDIO_DRIVERS}}
        for trait, coefs in signal.TRAIT_FORMULAS.items():
            expected = 0.5 + sum(c * signal.driver_z(d, drivers[d]) for d, c in coefs.items())
            assert s.traits_raw[trait] == pytest.approx(expected)
        assert abs(s.traits["openness"] - np.clip(s.traits_raw["openness"], 0, 1)) < 0.25


def test_noise_level_is_the_configured_one(signals):
    residual = np.array([s.traits[t] - s.traits_raw[t] for s in signals for t in signal.TRAITS])
    assert 0.025 < residual.std() < 0.055  # noise_sd 0.04 (a little clipping aside)


def test_visual_drivers_dominate():
    for trait, coefs in signal.TRAIT_FORMULAS.items():
        visual = sum(c * c for d, c in coefs.items() if d in signal.PLANTED_AUS)
        audio = sum(c * c for d, c in coefs.items() if d in signal.AUDIO_DRIVERS)
        assert visual > 3 * audio > 0, trait


def test_au_trajectories_vary_within_and_across_videos(signals):
    n_frames = DemoConfig.from_mapping(DEFAULT).n_frames
    for name, spec in signal.PLANTED_AUS.items():
        means = np.array([s.au_mean[name] for s in signals])
        within = np.array([s.au[name].std() for s in signals])
        assert means.std() > 0.05, name  # the trait signal
        assert np.median(within) > 0.05, name  # frame-level events
        for s in signals:
            traj = s.au[name]
            assert traj.shape == (n_frames,)
            assert traj.min() >= 0.0 and traj.max() <= spec.cap
            assert traj.mean() == pytest.approx(s.au_mean[name])


def test_signal_is_deterministic_per_video(signals):
    cfg = DemoConfig.from_mapping(DEFAULT)
    again = signal.video_signal(signals[3].video, cfg)
    assert again.traits == signals[3].traits
    assert np.array_equal(again.au["AU12"], signals[3].au["AU12"])
    assert signals[3].traits != signals[4].traits


def test_formula_text_covers_every_trait():
    text = signal.trait_formula_text()
    assert set(text) == set(signal.TRAITS)
    assert "z(AU01)" in text["openness"] and "noise_sd" in text["interview"]


def test_background_is_one_room_per_person_unless_per_clip():
    per_user = DemoConfig.from_mapping({**DEFAULT, "background": "per_user"})
    per_clip = DemoConfig.from_mapping({**DEFAULT, "background": "per_clip"})
    videos = plan_videos(per_user)
    assert len({v.identity for v in videos}) >= 2
    user = [signal.video_signal(v, per_user) for v in videos]
    clip = [signal.video_signal(v, per_clip) for v in videos]
    room = {}
    for v, s in zip(videos, user, strict=True):
        room.setdefault(v.identity, set()).add(s.nuisance.bg_seed)
    assert all(len(seeds) == 1 for seeds in room.values())  # one room per person
    assert len({next(iter(seeds)) for seeds in room.values()}) == len(room)  # rooms differ
    assert len({s.nuisance.bg_seed for s in clip}) == len(clip)  # a wall per clip
    for a, b in zip(user, clip, strict=True):  # nothing else changes, the labels included
        assert a.traits == b.traits
        np.testing.assert_array_equal(a.nuisance.gain, b.nuisance.gain)
        np.testing.assert_array_equal(a.nuisance.bg_mix, b.nuisance.bg_mix)


def _person_f_test(values: np.ndarray, person: np.ndarray) -> float:
    """One-way ANOVA p of ``values`` by ``person`` (scipy's f_oneway)."""
    from scipy.stats import f_oneway

    return float(f_oneway(*(values[person == p] for p in np.unique(person))).pvalue)


def test_a_person_carries_no_label_information():
    """The default population (40 persons x 10 clips): a person's clips draw their
    planted levels independently, so the labels do not differ between persons beyond
    chance (one-way ANOVA per trait). The negative control adds a person offset of sd
    half the label sd, which the same test must catch."""
    cfg = DemoConfig()
    plan = plan_videos(cfg)
    labels = np.array([[signal.video_signal(v, cfg).traits[t] for t in signal.BIG_FIVE]
                       for v in plan])  # fmt: skip
    person = np.array([v.identity for v in plan])
    p_values = [_person_f_test(labels[:, j], person) for j in range(labels.shape[1])]
    assert min(p_values) > 0.01 / len(p_values), p_values  # Bonferroni over the traits
    offset = np.random.default_rng(0).normal(0, 0.5, person.max() + 1)[person]
    leaky = labels[:, 0] + offset * labels[:, 0].std()
    assert _person_f_test(leaky, person) < 1e-3
