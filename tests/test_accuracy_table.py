"""The evaluation stage: accuracy table, fallback to the train mean, comparisons, outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.evaluation.accuracy_table import (
    ACCURACY_COLUMNS,
    COMPARISON_COLUMNS,
    METRICS_COLUMNS,
    evaluate,
    render_markdown,
    write_outputs,
)
from traitlens.evaluation.metrics import mean_accuracy
from traitlens.ingest.labels import BIG_FIVE
from traitlens.ingest.manifest import read_groups
from traitlens.models.predictions import PREDICTION_COLUMNS, read_labels, read_predictions

N_BOOT = 200
SIZES = {"train": 60, "validation": 40, "test": 40}


@pytest.fixture
def labels() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for split, n in SIZES.items():
        for i in range(n):
            rows.append({"video_id": f"{split[:2]}{i:03d}", "split": split})
    table = pd.DataFrame(rows)
    table[list(BIG_FIVE)] = rng.uniform(0.2, 0.8, size=(len(table), 5))
    return table


def _predict(labels: pd.DataFrame, noise: float, seed: int) -> pd.DataFrame:
    out = labels.copy()
    rng = np.random.default_rng(seed)
    out[list(BIG_FIVE)] = np.clip(out[list(BIG_FIVE)] + rng.normal(0, noise, (len(out), 5)), 0, 1)
    return out.loc[:, list(PREDICTION_COLUMNS)]


@pytest.fixture
def predictions(labels) -> dict[str, pd.DataFrame]:
    # face clearly better than img; audio worse; given in a scrambled order
    return {
        "audio": _predict(labels, 0.20, 1),
        "face": _predict(labels, 0.03, 2),
        "img": _predict(labels, 0.10, 3),
        "img+audio": _predict(labels, 0.09, 4),
    }


def _row(result, model: str, split: str) -> pd.Series:
    acc = result.accuracy
    return acc[(acc["model"] == model) & (acc["split"] == split)].iloc[0]


def test_table_columns_rows_and_values(labels, predictions):
    result = evaluate(labels, predictions, n_boot=N_BOOT)
    assert tuple(result.accuracy.columns) == (
        "model",
        "split",
        "n_videos",
        "n_groups",
        "n_fallback",
        "mean",
        "mean_ci_low",
        "mean_ci_high",
        "openness",
        "conscientiousness",
        "extraversion",
        "agreeableness",
        "neuroticism",
        "pearson_r",
        "ccc",
        "r2",
    )
    assert tuple(result.accuracy.columns) == ACCURACY_COLUMNS
    assert tuple(result.metrics.columns) == METRICS_COLUMNS
    assert tuple(result.comparisons.columns) == COMPARISON_COLUMNS
    # "aus" absent -> skipped; paper order; train_mean last; split by split
    order = ["img+audio", "img", "face", "audio", "train_mean"]
    assert result.accuracy["model"].tolist() == order * 2
    assert result.accuracy["split"].tolist() == ["validation"] * 5 + ["test"] * 5
    assert len(result.metrics) == 10 * 5

    test = labels[labels["split"] == "test"]
    face = predictions["face"].set_index("video_id").loc[test["video_id"], list(BIG_FIVE)]
    row = _row(result, "face", "test")
    assert row["mean"] == pytest.approx(mean_accuracy(face.to_numpy(), test[list(BIG_FIVE)]))
    assert row["mean_ci_low"] < row["mean"] < row["mean_ci_high"]
    assert (row["n_videos"], row["n_groups"], row["n_fallback"]) == (40, 40, 0)
    assert row[list(BIG_FIVE)].mean() == pytest.approx(row["mean"])
    long = result.metrics.query("model == 'face' and split == 'test'")
    assert long["trait"].tolist() == list(BIG_FIVE)
    assert long["pearson_r"].mean() == pytest.approx(row["pearson_r"])
    assert _row(result, "face", "test")["mean"] > _row(result, "img", "test")["mean"]


def test_train_mean_uses_train_labels_only(labels, predictions):
    result = evaluate(labels, predictions, n_boot=N_BOOT)
    train = labels[labels["split"] == "train"][list(BIG_FIVE)].to_numpy().mean(axis=0)
    test = labels[labels["split"] == "test"][list(BIG_FIVE)].to_numpy()
    row = _row(result, "train_mean", "test")
    expected = 1 - np.abs(test - train).mean(axis=0)
    np.testing.assert_allclose(row[list(BIG_FIVE)].to_numpy(float), expected)
    assert np.isnan(row["pearson_r"])  # constant prediction: r undefined
    metrics = result.metrics.query("model == 'train_mean'")

    changed = labels.copy()
    first_test = changed.index[changed["split"] == "test"][0]
    changed.loc[first_test, list(BIG_FIVE)] = 0.99  # a test label moves ...
    again = evaluate(changed, predictions, n_boot=N_BOOT)
    val = _row(again, "train_mean", "validation")[list(BIG_FIVE)]
    # ... the baseline's prediction does not: its validation scores stay identical
    pd.testing.assert_series_equal(val, _row(result, "train_mean", "validation")[list(BIG_FIVE)])
    pd.testing.assert_frame_equal(
        again.metrics.query("model == 'train_mean' and split == 'validation'"),
        metrics.query("split == 'validation'"),
    )


def test_missing_predictions_fall_back_to_train_mean(labels, predictions):
    img = predictions["img"]
    test_ids = labels.loc[labels["split"] == "test", "video_id"]
    dropped = set(test_ids[:7])
    partial = {"img": img[~img["video_id"].isin(dropped)], "face": predictions["face"]}
    result = evaluate(labels, partial, n_boot=N_BOOT)
    assert _row(result, "img", "test")["n_fallback"] == 7
    assert _row(result, "img", "validation")["n_fallback"] == 0
    assert _row(result, "img", "test")["n_videos"] == 40  # still scored on every video

    # the dropped videos count with exactly the train-mean error
    train = labels[labels["split"] == "train"][list(BIG_FIVE)].to_numpy().mean(axis=0)
    test = labels[labels["split"] == "test"].set_index("video_id")[list(BIG_FIVE)]
    pred = img.set_index("video_id").loc[test.index, list(BIG_FIVE)].to_numpy().copy()
    pred[test.index.isin(dropped)] = train
    assert _row(result, "img", "test")["mean"] == pytest.approx(mean_accuracy(pred, test))


def test_unknown_video_names_the_file(labels, predictions):
    bad = pd.concat([predictions["img"], predictions["img"].iloc[[0]].assign(video_id="zz999")])
    with pytest.raises(UserError, match=r"models/img/predictions\.tsv.*zz999"):
        evaluate(
            labels,
            {"img": bad},
            n_boot=N_BOOT,
            sources={"img": "models/img/predictions.tsv"},
        )


def test_duplicate_and_resplit_videos_rejected(labels, predictions):
    face = predictions["face"]
    with pytest.raises(UserError, match="face.tsv.*twice"):
        evaluate(labels, {"face": pd.concat([face, face.iloc[[3]]])}, sources={"face": "face.tsv"})
    moved = face.copy()
    moved.loc[moved.index[0], "split"] = "test"  # a train video predicted as a test one
    with pytest.raises(UserError, match="face.tsv.*another split"):
        evaluate(labels, {"face": moved}, sources={"face": "face.tsv"})


def test_bad_model_or_split_or_labels(labels, predictions):
    with pytest.raises(UserError, match="unknown model"):
        evaluate(labels, {"resnet": predictions["img"]})
    with pytest.raises(UserError, match="splits"):
        evaluate(labels, predictions, splits=["dev"])
    no_train = labels[labels["split"] != "train"]
    with pytest.raises(UserError, match="manifest.tsv.*'train'.*baseline"):
        evaluate(no_train, predictions, labels_source="manifest.tsv")


def test_comparisons(labels, predictions):
    result = evaluate(labels, predictions, n_boot=N_BOOT, seed=1)
    cmp = result.comparisons
    assert cmp["comparison"].tolist() == ["face - img", "img+audio - img"] * 2
    face = cmp[(cmp["comparison"] == "face - img") & (cmp["split"] == "test")].iloc[0]
    diff = _row(result, "face", "test")["mean"] - _row(result, "img", "test")["mean"]
    assert face["diff_mean_accuracy"] == pytest.approx(diff)
    assert face["ci_low"] > 0 and face["p_value"] < 0.01
    assert (face["n_videos"], face["n_groups"], face["n_boot"]) == (40, 40, N_BOOT)
    # a pair with a missing model is left out
    only = evaluate(labels, {"face": predictions["face"], "audio": predictions["audio"]})
    assert only.comparisons.empty
    assert only.accuracy["model"].tolist() == ["face", "audio", "train_mean"] * 2


def test_reproducible(labels, predictions):
    a = evaluate(labels, predictions, n_boot=N_BOOT, seed=5)
    b = evaluate(labels, predictions, n_boot=N_BOOT, seed=5)
    pd.testing.assert_frame_equal(a.accuracy, b.accuracy)
    pd.testing.assert_frame_equal(a.comparisons, b.comparisons)


def test_write_outputs_round_trip(tmp_path, labels, predictions):
    # through the real readers, as the entry script does
    manifest = tmp_path / "manifest.tsv"
    # four videos per person, as build_manifest writes the group column
    persons = [f"p{i // 4:02d}" for i in range(len(labels))]
    labels.assign(path="x.mp4", group=persons).to_csv(manifest, sep="\t", index=False)
    paths = {}
    for model, table in predictions.items():
        paths[model] = tmp_path / "models" / model / "predictions.tsv"
        paths[model].parent.mkdir(parents=True)
        table.to_csv(paths[model], sep="\t", index=False)
    result = evaluate(
        read_labels(manifest),
        {m: read_predictions(p, "predict_visual") for m, p in paths.items()},
        n_boot=N_BOOT,
        sources=paths,
        groups=read_groups(manifest),
    )
    out = {
        "table": tmp_path / "tables" / "accuracy.tsv",
        "markdown": tmp_path / "tables" / "accuracy.md",
        "metrics": tmp_path / "tables" / "metrics.tsv",
        "comparisons": tmp_path / "tables" / "comparisons.tsv",
        "figure": tmp_path / "figures" / "accuracy.png",
    }
    write_outputs(result, **out)

    table = pd.read_csv(out["table"], sep="\t")
    assert tuple(table.columns) == ACCURACY_COLUMNS
    pd.testing.assert_frame_equal(table, result.accuracy, atol=1e-6, check_dtype=False)
    mean = out["table"].read_text().splitlines()[1].split("\t")[ACCURACY_COLUMNS.index("mean")]
    assert mean.count(".") == 1 and len(mean.split(".")[1]) == 6
    assert set(table["n_groups"]) == {10}  # 40 videos per split, 4 per person
    metrics = pd.read_csv(out["metrics"], sep="\t")
    assert tuple(metrics.columns) == METRICS_COLUMNS and len(metrics) == len(result.metrics)
    comparisons = pd.read_csv(out["comparisons"], sep="\t")
    assert comparisons["comparison"].tolist() == result.comparisons["comparison"].tolist()
    assert out["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = out["markdown"].read_text()
    assert md == render_markdown(result)
    face = _row(result, "face", "validation")
    assert f"{face['mean']:.3f} [{face['mean_ci_low']:.3f}, {face['mean_ci_high']:.3f}]" in md
    assert "face - img" in md and f"{N_BOOT} resamples" in md and "1 - mean absolute" in md
    assert "## test (40 videos, 10 groups)" in md
    assert md.count("intervals: cluster bootstrap over persons (groups): 10 groups") == 2
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writers left nothing behind


def _clustered(labels: pd.DataFrame, per_person: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Predictions whose errors are shared by the videos of a person, and the groups."""
    rng = np.random.default_rng(seed)
    person = {v: f"p{i // per_person:03d}" for i, v in enumerate(labels["video_id"])}
    codes = pd.factorize(labels["video_id"].map(person))[0]
    bias = rng.normal(0, 0.1, (codes.max() + 1, 5))[codes]
    out = labels.copy()
    out[list(BIG_FIVE)] = np.clip(out[list(BIG_FIVE)] + bias, 0, 1)
    return out.loc[:, list(PREDICTION_COLUMNS)], person


def test_intervals_resample_persons(labels, predictions):
    img, person = _clustered(labels, per_person=5, seed=7)
    models = {"img": img, "face": predictions["face"]}
    by_video = evaluate(labels, models, n_boot=N_BOOT)
    by_person = evaluate(labels, models, n_boot=N_BOOT, groups=person)
    # same point estimates; the cluster CI of person-level errors is clearly wider
    pd.testing.assert_series_equal(by_video.accuracy["mean"], by_person.accuracy["mean"])
    width = {
        name: _row(r, "img", "test")["mean_ci_high"] - _row(r, "img", "test")["mean_ci_low"]
        for name, r in (("video", by_video), ("person", by_person))
    }
    assert width["person"] > 1.5 * width["video"]
    assert _row(by_person, "img", "test")["n_groups"] == 8
    assert set(by_person.comparisons["n_groups"]) == {8}
    md = render_markdown(by_person)
    assert "## test (40 videos, 8 groups)" in md and "cluster bootstrap over persons" in md
    assert "intervals: bootstrap over videos" in render_markdown(by_video)

    # every video its own group: exactly the bootstrap over videos
    own = {v: f"g{i}" for i, v in enumerate(labels["video_id"][::-1])}
    alone = evaluate(labels, models, n_boot=N_BOOT, groups=own)
    pd.testing.assert_frame_equal(alone.accuracy, by_video.accuracy)
    pd.testing.assert_frame_equal(alone.comparisons, by_video.comparisons)


def test_video_without_a_group_names_the_manifest(labels, predictions):
    groups = {v: "p" for v in labels["video_id"][:-1]}  # the last test video has none
    with pytest.raises(UserError, match=r"manifest\.tsv: 1 video\(s\) without a group \(te039\)"):
        evaluate(labels, predictions, n_boot=N_BOOT, groups=groups, labels_source="manifest.tsv")
