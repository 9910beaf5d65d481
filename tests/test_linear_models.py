"""The linear models: shared ridge, audio pooling, AU regression, late fusion."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.aus.estimate_aus import OPENFACE_17, VIDEO_COLUMNS
from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.models.au_regression import read_au_features
from traitlens.models.audio_model import pool_shard, pooled_feature_names, read_audio_features
from traitlens.models.fusion import choose_image_weight, fuse
from traitlens.models.predictions import read_predictions
from traitlens.models.ridge import (
    fit_predict,
    fit_ridge,
    load_model,
    mean_abs_error,
    save_model,
    select_and_fit,
    standardisation,
    train_linear_model,
)

TRAITS = list(BIG_FIVE)
ALPHAS = [1e-4, 1e-2, 1.0, 100.0, 1e4, 1e6]


def linear_data(rng, n, p, noise, signal=True):
    """Features (n, p) and five traits linear in them (or pure noise), kept in [0, 1]."""
    x = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, size=p) + rng.normal(size=p)
    coef = rng.normal(scale=0.02, size=(p, 5)) if signal else np.zeros((p, 5))
    y = 0.5 + (x - x.mean(axis=0)) @ coef + rng.normal(scale=noise, size=(n, 5))
    return x, y, coef


def labels_table(ids, splits, y):
    table = pd.DataFrame({"video_id": ids, "split": splits})
    table[TRAITS] = y
    return table


# --- ridge ----------------------------------------------------------------------------


def test_ridge_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x, y, coef = linear_data(rng, 400, 6, noise=1e-4)
    model = fit_ridge(x, y, 1e-6, [f"f{i}" for i in range(6)])
    np.testing.assert_allclose(model.feature_unit_coef(), coef, atol=1e-4)
    np.testing.assert_allclose(model.predict(x), np.clip(y, 0, 1), atol=1e-3)


def test_intercept_is_not_penalised():
    rng = np.random.default_rng(1)
    x, y, _ = linear_data(rng, 100, 4, noise=0.05)
    model = fit_ridge(x, y + 0.2, 1e12, ["a", "b", "c", "d"])
    # A huge alpha shrinks the slopes to 0 and leaves the train mean, not 0.
    np.testing.assert_allclose(model.coef, 0.0, atol=1e-9)
    np.testing.assert_allclose(model.intercept, (y + 0.2).mean(axis=0))


def test_alpha_selection_small_for_clean_signal_large_for_noise():
    rng = np.random.default_rng(2)
    x, y, _ = linear_data(rng, 300, 8, noise=0.002)
    clean = select_and_fit(x[:200], y[:200], x[200:], y[200:], ALPHAS, 1.0, list("abcdefgh"))
    assert clean.alpha <= 1e-2
    assert len(clean.validation_mae) == len(ALPHAS)

    x, y, _ = linear_data(rng, 200, 30, noise=0.1, signal=False)
    names = [f"n{i}" for i in range(30)]
    noise = select_and_fit(x[:60], y[:60], x[60:], y[60:], ALPHAS, 1.0, names)
    assert noise.alpha >= 1e4


def test_default_alpha_without_validation_and_bad_alphas():
    rng = np.random.default_rng(3)
    x, y, _ = linear_data(rng, 50, 3, noise=0.05)
    model = select_and_fit(x, y, None, None, ALPHAS, 7.0, ["a", "b", "c"])
    assert model.alpha == 7.0 and model.validation_mae == ()
    with pytest.raises(UserError, match="alphas"):
        select_and_fit(x, y, None, None, [], 1.0, ["a", "b", "c"])
    with pytest.raises(UserError, match="alphas"):
        select_and_fit(x, y, None, None, [1.0, -2.0], 1.0, ["a", "b", "c"])


def test_standardisation_uses_train_rows_only_and_handles_constant_columns():
    rng = np.random.default_rng(4)
    n = 90
    x = np.column_stack([rng.normal(size=n), np.full(n, 3.0), rng.normal(size=n)])
    y = np.clip(0.5 + 0.05 * x[:, [0]] + rng.normal(scale=0.01, size=(n, 5)), 0, 1)
    splits = np.array(["train"] * 50 + ["validation"] * 20 + ["test"] * 20)
    x[50:] += 100.0  # other splits far away: their statistics must not leak in
    ids = [f"v{i:03d}" for i in range(n)]
    features = pd.DataFrame(x, index=ids, columns=["a", "const", "b"])
    model, table, _ = fit_predict(features, labels_table(ids, splits, y), ALPHAS, 1.0)
    means, scales = standardisation(x[:50])
    np.testing.assert_allclose(model.means, means)
    np.testing.assert_allclose(model.scales, scales)
    assert model.scales[1] == 1.0 and np.allclose(model.coef[1], 0.0)
    assert np.isfinite(table[TRAITS].to_numpy()).all()
    assert ((table[TRAITS] >= 0) & (table[TRAITS] <= 1)).all(axis=None)


def test_missing_features_are_not_fitted_and_not_predicted():
    rng = np.random.default_rng(5)
    x, y, _ = linear_data(rng, 60, 3, noise=0.01)
    ids = [f"v{i:02d}" for i in range(60)]
    splits = ["train"] * 40 + ["validation"] * 10 + ["test"] * 10
    x[[3, 45, 55], 1] = np.nan
    features = pd.DataFrame(x, index=ids, columns=["a", "b", "c"]).drop(index="v10")
    model, table, counts = fit_predict(features, labels_table(ids, splits, y), ALPHAS, 1.0)
    assert model.n_train == 38  # v03 (NaN) and v10 (no row) are left out
    assert set(table["video_id"]) == set(ids) - {"v03", "v10", "v45", "v55"}
    by_split = {c.split: c for c in counts}
    assert (by_split["train"].n_videos, by_split["train"].n_with_features) == (40, 38)
    assert by_split["test"].n_with_features == 9


def test_json_round_trip_predicts_the_same(tmp_path):
    rng = np.random.default_rng(6)
    x, y, _ = linear_data(rng, 80, 5, noise=0.02)
    model = select_and_fit(x[:60], y[:60], x[60:], y[60:], ALPHAS, 1.0, list("abcde"))
    save_model(model, tmp_path / "model.json")
    assert "pickle" not in (tmp_path / "model.json").read_text()
    again = load_model(tmp_path / "model.json")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.alpha == model.alpha and again.validation_mae == model.validation_mae
    (tmp_path / "bad.json").write_text('{"format": "something else"}')
    with pytest.raises(UserError, match="bad.json"):
        load_model(tmp_path / "bad.json")


# --- audio ----------------------------------------------------------------------------


def write_audio_shard(path, videos):
    """A tiny audio shard in extract_shard's layout: ``videos`` = [(id, rows or None)]."""
    n_mels = 4
    blocks = [np.zeros((0, n_mels), np.float32) if r is None else r for _, r in videos]
    offsets = np.cumsum([0] + [len(b) for b in blocks]).astype(np.int64)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=np.concatenate(blocks).astype(np.float32))
        f.create_dataset("offsets", data=offsets)
        f.create_dataset("video_id", data=[v for v, _ in videos], dtype=h5py.string_dtype())
        f.create_dataset("has_audio", data=[r is not None for _, r in videos])


def test_audio_pooling_matches_numpy_and_skips_silent_videos(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(30, 4)).astype(np.float32)
    b = rng.normal(size=(7, 4)).astype(np.float32)
    write_audio_shard(tmp_path / "s0.h5", [("a", a), ("mute", None), ("b", b)])
    write_audio_shard(tmp_path / "s1.h5", [("c", a[:5])])
    table, silent = pool_shard(tmp_path / "s0.h5")
    assert silent == ["mute"] and list(table.index) == ["a", "b"]
    assert list(table.columns) == list(pooled_feature_names(4))
    assert table.columns[0] == "mel00_mean" and table.columns[4] == "mel00_std"
    for vid, rows in (("a", a), ("b", b)):
        rows = rows.astype(np.float64)
        np.testing.assert_allclose(table.loc[vid, "mel00_mean":"mel03_mean"], rows.mean(0))
        np.testing.assert_allclose(table.loc[vid, "mel00_std":"mel03_std"], rows.std(0))
    both = read_audio_features([tmp_path / "s0.h5", tmp_path / "s1.h5"])
    assert list(both.index) == ["a", "b", "c"]


def test_malformed_audio_file_names_itself_and_the_rule(tmp_path):
    junk = tmp_path / "s9.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match=r"s9\.h5.*extract_shard"):
        read_audio_features([junk])
    bad = tmp_path / "s8.h5"
    write_audio_shard(bad, [("a", np.zeros((3, 4), np.float32))])
    with h5py.File(bad, "a") as f:
        del f["offsets"]
        f.create_dataset("offsets", data=np.array([0, 5], np.int64))  # past the rows
    with pytest.raises(UserError, match=r"s8\.h5.*offsets.*extract_shard"):
        pool_shard(bad)


def test_duplicate_video_across_shards_is_an_error(tmp_path):
    rows = np.ones((3, 4), np.float32)
    write_audio_shard(tmp_path / "s0.h5", [("a", rows)])
    write_audio_shard(tmp_path / "s1.h5", [("a", rows)])
    with pytest.raises(UserError, match="appears in both"):
        read_audio_features([tmp_path / "s0.h5", tmp_path / "s1.h5"])


# --- AUs ------------------------------------------------------------------------------


def test_au_regression_learns_a_planted_trait(tmp_path):
    rng = np.random.default_rng(8)
    n = 240
    ids = [f"vid{i:04d}" for i in range(n)]
    aus = rng.gamma(2.0, 0.3, size=(n, len(VIDEO_COLUMNS) - 2))
    table = pd.DataFrame(aus, columns=list(VIDEO_COLUMNS[2:]))
    table.insert(0, "n_frames", 10)
    table.insert(0, "video_id", ids)
    table.loc[5, list(VIDEO_COLUMNS[2:])] = np.nan  # no usable face
    table.loc[5, "n_frames"] = 0
    for k, start in enumerate(range(0, n, 100)):
        table.iloc[start : start + 100].to_csv(
            tmp_path / f"s{k}.videos.tsv", sep="\t", index=False, na_rep=""
        )

    au = table[list(OPENFACE_17)].fillna(0.6).to_numpy()  # vid0005's label is never fitted
    planted = 0.5 + 0.15 * (au[:, OPENFACE_17.index("AU12")] - 0.6)
    planted -= 0.1 * (au[:, OPENFACE_17.index("AU04")] - 0.6)
    y = np.clip(planted[:, None] + rng.normal(scale=0.01, size=(n, 5)), 0, 1)
    y[:, 4] = rng.uniform(0.3, 0.7, size=n)  # one trait with no AU signal at all
    splits = np.array(["train"] * 140 + ["validation"] * 50 + ["test"] * 50)
    manifest = labels_table(ids, splits, y)
    manifest.to_csv(tmp_path / "manifest.tsv", sep="\t", index=False)

    model, counts = train_linear_model(
        "aus",
        read_au_features(sorted(tmp_path.glob("s*.videos.tsv"))),
        tmp_path / "manifest.tsv",
        ALPHAS,
        1.0,
        tmp_path / "model.json",
        tmp_path / "predictions.tsv",
    )
    assert model.feature_names == OPENFACE_17
    pred = read_predictions(tmp_path / "predictions.tsv", "train_linear_model")
    assert "vid0005" not in set(pred["video_id"]) and len(pred) == n - 1
    test = pred[pred["split"] == "test"].merge(manifest, on="video_id", suffixes=("", "_y"))
    planted_traits = TRAITS[:4]
    mae = mean_abs_error(test[planted_traits], test[[f"{t}_y" for t in planted_traits]])
    baseline = mean_abs_error(y[splits == "train", :4].mean(0), y[splits == "test", :4])
    assert mae < 0.3 * baseline
    by_split = {c.split: c for c in counts}
    assert by_split["test"].mae < by_split["test"].baseline_mae


def test_au_table_without_the_columns_names_file_and_rule(tmp_path):
    (tmp_path / "s0.videos.tsv").write_text("video_id\tn_frames\tAU01\nv\t3\t0.1\n")
    with pytest.raises(UserError, match=r"s0\.videos\.tsv.*AU02.*estimate_aus"):
        read_au_features([tmp_path / "s0.videos.tsv"])


# --- fusion ---------------------------------------------------------------------------


def prediction_table(ids, split, value):
    table = pd.DataFrame({"video_id": ids, "split": split})
    table[TRAITS] = value
    return table


def trait_values(table, video_id):
    return table.loc[video_id, TRAITS].to_numpy(dtype=float)


def test_fusion_weights_and_one_model_only_videos():
    image = prediction_table(["both", "img_only"], "test", 0.8)
    audio = prediction_table(["both", "aud_only"], ["test", "train"], 0.4)
    fused, counts = fuse(image, audio, 0.75)
    fused = fused.set_index("video_id")
    np.testing.assert_allclose(trait_values(fused, "both"), 0.75 * 0.8 + 0.25 * 0.4)
    np.testing.assert_allclose(trait_values(fused, "img_only"), 0.8)
    np.testing.assert_allclose(trait_values(fused, "aud_only"), 0.4)
    assert fused.loc["aud_only", "split"] == "train"
    assert (counts["test"].both, counts["test"].image_only, counts["train"].audio_only) == (1, 1, 1)
    half, _ = fuse(image, audio, 0.5)
    np.testing.assert_allclose(trait_values(half.set_index("video_id"), "both"), 0.6)


def test_fusion_rejects_bad_weight_and_split_clash():
    image = prediction_table(["a"], "test", 0.5)
    with pytest.raises(UserError, match="image_weight"):
        fuse(image, image, 1.5)
    with pytest.raises(UserError, match="different split"):
        fuse(image, prediction_table(["a"], "train", 0.5), 0.5)


def _table(ids, split, values):
    out = pd.DataFrame({"video_id": ids, "split": split})
    for k, trait in enumerate(BIG_FIVE):
        out[trait] = values[:, k]
    return out


def test_fusion_weight_chosen_on_validation():
    rng = np.random.default_rng(0)
    ids = [f"v{i:03d}" for i in range(60)]
    truth = rng.uniform(0.2, 0.8, (60, 5))
    labels = _table(ids, ["validation"] * 40 + ["test"] * 20, truth)
    good = _table(ids, labels["split"], truth + rng.normal(0, 0.02, truth.shape))
    noisy = _table(ids, labels["split"], truth + rng.normal(0, 0.2, truth.shape))
    weight, maes = choose_image_weight(good, noisy, labels)
    assert weight >= 0.9 and len(maes) == 21 and maes[weight] == min(maes.values())
    assert choose_image_weight(noisy, good, labels)[0] <= 0.1  # the roles swap
    same = choose_image_weight(good, good, labels)  # every weight ties: the paper's 0.5
    assert same[0] == 0.5
    with pytest.raises(UserError, match="no validation video"):
        choose_image_weight(good, noisy, labels.assign(split="test"))
