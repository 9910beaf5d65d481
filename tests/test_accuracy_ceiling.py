"""The accuracy goal's controls (traitlens.demo.accuracy_ceiling): the ridge on the planted
drivers must reach a low MAE ratio when the labels come from them, and its shuffled control
must not; the same for the ridge on measured landmarks that carry the drivers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.demo.accuracy_ceiling import (
    ORACLE_SETS,
    _shuffled_over_groups,
    accuracy_ratios,
    ceiling_ratios,
    landmark_features,
    model_mae_ratios,
    unit_features,
)
from traitlens.ingest.labels import BIG_FIVE

ALPHAS = [0.1, 1.0, 10.0]


def planted_population(seed: int, n_people: int = 30, clips: int = 6, noise: float = 0.03):
    """Ground-truth videos (drivers uniform in their ranges), labels linear in the visual
    drivers plus noise, split by person; and video -> person."""
    rng = np.random.default_rng(seed)
    columns = ORACLE_SETS["oracle_all"]
    rows, groups = [], {}
    for p in range(n_people):
        split = "train" if p < n_people * 0.6 else ("validation" if p < n_people * 0.8 else "test")
        for c in range(clips):
            video = f"p{p:02d}.{c:03d}"
            groups[video] = f"p{p:02d}"
            rows.append(
                {
                    "video_id": video,
                    "split": split,
                    **dict(zip(columns, rng.random(6), strict=True)),
                }
            )
    truth = pd.DataFrame(rows).set_index("video_id")
    weights = rng.normal(0, 0.15, (4, len(BIG_FIVE)))
    visual = truth[list(ORACLE_SETS["oracle_visual"])].to_numpy() - 0.5
    y = np.clip(0.5 + visual @ weights + rng.normal(0, noise, (len(truth), len(BIG_FIVE))), 0, 1)
    labels = pd.DataFrame(y, columns=list(BIG_FIVE))
    labels.insert(0, "split", truth["split"].to_numpy())
    labels.insert(0, "video_id", truth.index.to_numpy())
    return truth.drop(columns="split"), labels, groups


def test_oracle_meets_the_goal_and_its_shuffled_control_misses_it():
    truth, labels, groups = planted_population(seed=1)
    ratios = ceiling_ratios(truth, labels, groups, ALPHAS, 1.0, "test")
    assert ratios["oracle_visual"] < 0.4  # labels come from these drivers
    assert ratios["oracle_all"] < 0.4
    assert ratios["oracle_visual_shuffled"] > 0.9  # another person's drivers say nothing


def test_oracle_misses_the_goal_when_the_labels_are_noise():
    # negative control of the positive control: labels unrelated to the drivers
    truth, labels, groups = planted_population(seed=2)
    rng = np.random.default_rng(0)
    labels[list(BIG_FIVE)] = rng.random((len(labels), len(BIG_FIVE)))
    assert ceiling_ratios(truth, labels, groups, ALPHAS, 1.0, "test")["oracle_visual"] > 0.9


def test_shuffle_never_gives_a_video_its_own_persons_values():
    truth, _, groups = planted_population(seed=3, n_people=5, clips=4)
    group_of = pd.Series(groups)
    values = truth[["AU01_mean"]]
    shuffled = _shuffled_over_groups(values, group_of, seed=4)
    owner = {v: groups[video] for video, v in values["AU01_mean"].items()}
    for video, value in shuffled["AU01_mean"].items():
        assert owner[value] != groups[video]


def test_model_ratios_from_the_accuracy_table():
    table = pd.DataFrame(
        {
            "model": ["img", "face", "train_mean", "img"],
            "split": ["test", "test", "test", "validation"],
            "mean": [0.93, 0.95, 0.90, 0.5],
        }
    )
    ratios = model_mae_ratios(table, "test")
    assert ratios["img"] == pytest.approx(0.7)
    assert ratios["face"] == pytest.approx(0.5)
    assert ratios["aus"] is None
    with pytest.raises(UserError, match="no train_mean row"):
        model_mae_ratios(table[table["model"] != "train_mean"], "test")


def test_accuracy_ratios_names_its_keys_for_planted_json():
    truth, labels, groups = planted_population(seed=5)
    table = pd.DataFrame({"model": ["train_mean"], "split": ["test"], "mean": [0.9]})
    keys = set(accuracy_ratios(table, truth, labels, groups, ALPHAS, 1.0))
    assert {"img_test_mae_ratio", "oracle_visual_test_mae_ratio"} <= keys
    assert "oracle_visual_shuffled_test_mae_ratio" in keys


def test_ground_truth_without_the_drivers_is_refused():
    truth, labels, groups = planted_population(seed=6)
    with pytest.raises(UserError, match="AU26_mean"):
        ceiling_ratios(truth.drop(columns="AU26_mean"), labels, groups, ALPHAS, 1.0, "test")


# --- the landmark ridge: the same fit on the face stage's measured geometry -----------


def landmark_population(seed: int, signal: float):
    """The planted population with each video's mean landmarks (478, 2): a fixed face,
    points moved in proportion to the visual drivers (``signal`` pixels per unit), a
    person's own shape, and measurement noise; one frame count per video."""
    truth, labels, groups = planted_population(seed)
    rng = np.random.default_rng(seed + 100)
    template = rng.uniform(20, 100, (478, 2))
    directions = rng.normal(0, 1, (4, 478, 2))  # each driver moves the points its own way
    people = sorted(set(groups.values()))
    shape = dict(zip(people, rng.normal(0, 0.5, (len(people), 478, 2)), strict=True))
    drivers = truth[list(ORACLE_SETS["oracle_visual"])].to_numpy() - 0.5
    means = (
        template
        + signal * np.einsum("vd,dlk->vlk", drivers, directions)
        + np.stack([shape[groups[v]] for v in truth.index])
        + rng.normal(0, 0.3, (len(truth), 478, 2))
    )
    return truth, labels, groups, list(truth.index), means, np.full(len(truth), 10)


def test_landmarks_that_carry_the_drivers_meet_the_goal_and_their_shuffle_misses_it():
    truth, labels, groups, ids, means, counts = landmark_population(seed=7, signal=4.0)
    landmarks = landmark_features(ids, means, counts)
    ratios = ceiling_ratios(truth, labels, groups, [1, 10, 100, 1000], 10.0, "test", 0, landmarks)
    assert ratios["landmark_ridge"] < 0.4
    assert ratios["landmark_ridge_shuffled"] > 0.9


def test_landmarks_without_the_drivers_miss_the_goal():
    truth, labels, groups, ids, means, counts = landmark_population(seed=8, signal=0.0)
    landmarks = landmark_features(ids, means, counts)
    ratios = ceiling_ratios(truth, labels, groups, [1, 10, 100, 1000], 10.0, "test", 0, landmarks)
    assert ratios["landmark_ridge"] > 0.9
    assert ratios["oracle_visual"] < 0.4  # the labels still come from the drivers


def test_landmark_features_pool_a_video_over_files_by_its_frames():
    a, b = np.full((1, 478, 2), 1.0), np.full((1, 478, 2), 4.0)
    none = np.full((1, 478, 2), np.nan)
    table = landmark_features(["v1", "v1", "v2"], np.concatenate([a, b, none]), np.array([3, 1, 0]))
    assert list(table.index) == ["v1", "v2"]
    assert table.shape[1] == 956 and list(table.columns[:2]) == ["x0", "y0"]
    assert np.allclose(table.loc["v1"], (3 * 1.0 + 1 * 4.0) / 4)
    assert table.loc["v2"].isna().all()  # no face: the ridge leaves the video out


def test_landmark_features_of_the_wrong_shape_are_refused():
    with pytest.raises(UserError, match="expected \\(videos, landmarks, 2\\)"):
        landmark_features(["v1"], np.zeros((1, 478, 3)), np.array([1]))
    with pytest.raises(UserError, match="do not fit 2 videos"):
        landmark_features(["v1", "v2"], np.zeros((1, 478, 2)), np.array([1]))


def test_accuracy_ratios_name_the_landmark_keys_only_with_landmarks():
    truth, labels, groups, ids, means, counts = landmark_population(seed=9, signal=4.0)
    table = pd.DataFrame({"model": ["train_mean"], "split": ["test"], "mean": [0.9]})
    without = accuracy_ratios(table, truth, labels, groups, ALPHAS, 1.0)
    assert "landmark_ridge_test_mae_ratio" not in without
    landmarks = landmark_features(ids, means, counts)
    keys = set(accuracy_ratios(table, truth, labels, groups, ALPHAS, 1.0, landmarks=landmarks))
    assert {"landmark_ridge_test_mae_ratio", "landmark_ridge_shuffled_test_mae_ratio"} <= keys


# --- the ridge on the network's own units: its features against its head --------------


def unit_frames(seed: int, signal: float, frames: int = 3, units: int = 16):
    """The planted population's frames with map means of a layer's units: each unit a
    mix of the visual drivers (``signal`` per unit of driver) plus frame noise."""
    truth, labels, groups = planted_population(seed)
    rng = np.random.default_rng(seed + 200)
    mix = rng.normal(0, 1, (4, units))
    drivers = truth[list(ORACLE_SETS["oracle_visual"])].to_numpy() - 0.5
    per_video = 1.0 + signal * drivers @ mix
    video_ids = np.repeat(truth.index.to_numpy(), frames)
    means = np.repeat(per_video, frames, axis=0) + rng.normal(0, 0.2, (len(video_ids), units))
    return truth, labels, groups, video_ids, np.maximum(means, 0.0)


def test_units_that_follow_the_drivers_meet_the_goal_and_random_ones_miss_it():
    truth, labels, groups, ids, trained = unit_frames(seed=11, signal=1.0)
    _, _, _, _, untrained = unit_frames(seed=11, signal=0.0)
    units = {
        "face_units_ridge": unit_features([("conv5_3", ids, trained)]),
        "face_units_ridge_random_init": unit_features([("conv5_3", ids, untrained)]),
    }
    ratios = ceiling_ratios(truth, labels, groups, ALPHAS, 1.0, "test", units=units)
    assert ratios["face_units_ridge"] < 0.4
    assert ratios["face_units_ridge_random_init"] > 0.9


def test_unit_features_average_each_video_over_its_frames_layer_by_layer():
    ids = ["v2", "v1", "v2", "v1"]
    a = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    b = np.array([[5.0], [6.0], [7.0], [8.0]])
    table = unit_features([("conv4_3", ids, a), ("conv5_3", ids, b)])
    assert list(table.index) == ["v1", "v2"]
    assert list(table.columns) == ["conv4_3_0", "conv4_3_1", "conv5_3_0"]
    assert table.loc["v1"].tolist() == [3.0, 30.0, 7.0]
    assert table.loc["v2"].tolist() == [2.0, 20.0, 6.0]


def test_unit_features_that_do_not_fit_their_frames_are_refused():
    with pytest.raises(UserError, match="layer conv5_3: map means of shape \\(2, 4\\)"):
        unit_features([("conv5_3", ["v1", "v1", "v2"], np.zeros((2, 4)))])
    with pytest.raises(UserError, match="no dumped layer"):
        unit_features([])
