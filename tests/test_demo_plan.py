"""Demo plan: First Impressions-format ids, splits, determinism (no rendering)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from traitlens.core.errors import UserError
from traitlens.demo.plan import DemoConfig, plan_videos, split_counts, user_ids

from support.workflow_config import DEMO_TEST_CONFIG

DEFAULT = DEMO_TEST_CONFIG
FI_ID = re.compile(r"^[A-Za-z0-9_-]{11}\.\d{3}$")


def test_plan_is_deterministic_and_fi_formatted():
    first, second = plan_videos(DEFAULT), plan_videos(dict(DEFAULT))
    assert first == second
    ids = [v.video_id for v in first]
    assert len(ids) == 60 and len(set(ids)) == 60
    assert all(FI_ID.match(i) for i in ids)
    assert all(v.filename == f"{v.video_id}.mp4" for v in first)
    assert any(i.startswith("-") for i in ids)
    assert any(i.startswith("--") for i in ids)
    # several clips per user, numbered from .001
    per_user = Counter(v.user_id for v in first)
    assert len(per_user) == 12 and set(per_user.values()) == {5}
    assert {v.clip for v in first} == {1, 2, 3, 4, 5}


def test_another_seed_gives_other_ids():
    other = plan_videos({**DEFAULT, "seed": 8})
    assert {v.video_id for v in other}.isdisjoint({v.video_id for v in plan_videos(DEFAULT)})


def test_default_split_is_by_identity_near_60_20_20():
    plan = plan_videos(DEFAULT)
    splits_of_user: dict[str, set[str]] = {}
    for v in plan:
        splits_of_user.setdefault(v.user_id, set()).add(v.split)
    assert all(len(s) == 1 for s in splits_of_user.values())  # a user's clips stay together
    counts = Counter(v.split for v in plan)
    assert set(counts) == {"training", "validation", "test"}
    for split, share in (("training", 0.6), ("validation", 0.2), ("test", 0.2)):
        assert abs(counts[split] / 60 - share) <= 0.1


def test_split_by_clip_puts_a_person_in_several_splits_with_no_empty_split():
    plan = plan_videos({**DEFAULT, "n_videos": 4, "n_identities": 2, "split_by": "clip"})
    assert Counter(v.split for v in plan) == {"training": 2, "validation": 1, "test": 1}
    many = plan_videos({**DEFAULT, "split_by": "clip"})
    splits_of_user: dict[str, set[str]] = {}
    for v in many:
        splits_of_user.setdefault(v.user_id, set()).add(v.split)
    assert max(len(s) for s in splits_of_user.values()) > 1  # the negative of the default


def test_split_by_person_needs_a_person_per_split():
    with pytest.raises(UserError, match=r"demo.split_by person .* demo.n_identities 2"):
        DemoConfig.from_mapping({**DEFAULT, "n_identities": 2})
    plan = plan_videos({**DEFAULT, "n_identities": 3})
    assert {v.user_id: v.split for v in plan}.__len__() == 3
    assert Counter({v.user_id: v.split for v in plan}.values()) == {
        "training": 1, "validation": 1, "test": 1,
    }  # fmt: skip


def test_default_demo_is_a_population_split_by_person():
    cfg = DemoConfig()
    assert cfg.n_identities >= 40 and cfg.split_by == "person"
    assert cfg.face_height[0] >= 0.5  # a talking head, as First Impressions


@pytest.mark.parametrize("n", range(3, 30))
def test_split_counts_cover_everything(n):
    counts = split_counts(n)
    assert sum(counts) == n and min(counts) >= 1
    assert counts[0] >= counts[1] - 1


def test_user_ids_distinct_and_dash_prefixed():
    ids = user_ids(30, seed=1)
    assert len(set(ids)) == 30 and all(len(i) == 11 for i in ids)
    assert ids[0].startswith("--") and sum(i.startswith("-") for i in ids) >= 10


def test_more_identities_than_videos_names_the_key():
    # other bad values stop at the schema (tests/test_config_sections.py)
    DemoConfig.from_mapping({**DEFAULT, "n_identities": DEFAULT["n_videos"]})
    with pytest.raises(UserError, match=r"demo.n_identities 61: .*demo.n_videos \(60\)"):
        DemoConfig.from_mapping({**DEFAULT, "n_identities": 61})


def test_from_mapping_takes_the_section():
    cfg = DemoConfig.from_mapping(DEFAULT)  # ground_truth is the rules' key, not a field
    assert (cfg.n_videos, cfg.duration_s, cfg.background) == (60, 4.0, "per_user")
    assert DemoConfig.from_mapping({**DEFAULT, "duration_s": 4}).duration_s == 4.0
    assert DemoConfig.from_mapping({"seed": 7}) == DemoConfig()
