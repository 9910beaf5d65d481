"""AU validation against planted truth: the join, the table, the figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from traitlens.aus.estimate_aus import AU_COLUMNS, PYFEAT_AUS, write_tsv
from traitlens.core.errors import UserError
from traitlens.demo import au_validation as val


def _truth_dir(tmp_path, n=42, seed=0):
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame({"video_id": np.repeat(["a.001", "b.002", "c.001"], n // 3)})
    truth["frame_index"] = np.tile(np.arange(n // 3) * 3, 3)
    for au in PYFEAT_AUS:
        truth[au] = 0.0
    truth["AU12"] = rng.uniform(0, 1, n)
    truth["AU01"] = rng.uniform(0, 1, n)
    folder = tmp_path / "ground_truth"
    folder.mkdir()
    truth.to_csv(folder / "frames.tsv", sep="\t", index=False)
    planted = {"planted_aus": {"AU12": {}, "AU01": {}}}
    (folder / "planted.json").write_text(json.dumps(planted))
    videos = pd.DataFrame({"video_id": truth["video_id"].unique()})
    videos["user_id"] = videos["video_id"].str.split(".").str[0]
    videos.to_csv(folder / "videos.tsv", sep="\t", index=False)
    return folder, truth


def _estimates(truth, rng):
    est = truth[["video_id", "frame_index"]].copy()
    est["success"] = True
    for au in AU_COLUMNS:
        est[au] = 0.0
    est["AU12"] = truth["AU12"] + rng.normal(0, 0.1, len(truth))  # tracks AU12
    est["AU01"] = 0.5 * truth["AU01"] + 0.2  # tracks AU01, rescaled
    est["AU06"] = 0.3 * truth["AU12"] + rng.normal(0, 0.05, len(truth))  # leak
    est["AU04"] = rng.normal(0.1, 0.01, len(truth))  # noise, no leak
    est.loc[3, "success"] = False
    est.loc[3, list(AU_COLUMNS)] = np.nan
    return est


def test_validation_table(tmp_path):
    folder, truth = _truth_dir(tmp_path)
    est = _estimates(truth, np.random.default_rng(1))
    path = tmp_path / "aus" / "s000.tsv"
    path.parent.mkdir()
    write_tsv(est, path)
    table, joined, planted = val.validate([path], folder)
    assert planted == ["AU01", "AU12"]
    assert tuple(table.columns) == val.VALIDATION_COLUMNS
    assert table["au"].tolist() == list(PYFEAT_AUS)
    by = table.set_index("au")
    assert by.loc["AU12", "planted"] and not by.loc["AU06", "planted"]
    assert by.loc["AU12", "pearson_r"] > 0.9
    assert by.loc["AU01", "pearson_r"] == pytest.approx(1.0, abs=1e-3)  # 4-decimal TSV
    assert by.loc["AU01", "video_mean_r"] == pytest.approx(1.0, abs=1e-3)  # 3 videos
    assert by.loc["AU12", "n_frames"] == len(truth) - 1  # the failed frame is left out
    assert np.isnan(by.loc["AU06", "pearson_r"])  # its truth is constant 0
    assert by.loc["AU06", "cross_talk_r"] > 0.9  # but it follows planted AU12
    assert by.loc["AU04", "cross_talk_r"] < 0.5
    assert by.loc["AU20", "estimate_sd"] == 0.0
    assert by["uncalibrated_r"].isna().all()  # no tables before a person baseline given
    figure = tmp_path / "figures" / "au_validation.png"
    val.scatter_figure(joined, table, planted, figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pearson_edge_cases():
    assert np.isnan(val.pearson([1, 1, 1], [1, 2, 3]))
    assert np.isnan(val.pearson([1, 2], [1, 2]))
    assert val.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(
        np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1]
    )


def test_missing_ground_truth_is_named(tmp_path):
    with pytest.raises(UserError, match="frames.tsv: missing"):
        val.load_truth(tmp_path)


def test_no_matching_frames(tmp_path):
    folder, truth = _truth_dir(tmp_path)
    est = _estimates(truth, np.random.default_rng(1))
    est["video_id"] = "other.001"
    path = tmp_path / "s000.tsv"
    write_tsv(est, path)
    with pytest.raises(UserError, match="no estimated frame matches"):
        val.validate([path], folder)


def test_planted_au_table_puts_the_truth_on_the_estimated_frames():
    """The AU table the emergence test runs on for its positive control: the estimates'
    frames and success flags, the planted values (AU43 also as AU45), NaN where no face
    was found; a frame the truth lacks is an error naming frames.tsv."""
    estimates = pd.DataFrame(
        {"video_id": ["a.001"] * 3, "frame_index": [0, 1, 2], "success": [True, False, True]}
    )
    truth = pd.DataFrame({"video_id": ["a.001"] * 3, "frame_index": [0, 1, 2]})
    for k, au in enumerate(PYFEAT_AUS):
        truth[au] = [0.1 * k, 0.2 * k, 0.3 * k]
    table = val.planted_au_table(estimates, truth)
    assert list(table.columns) == ["video_id", "frame_index", "success", *AU_COLUMNS]
    assert list(table["success"]) == [True, False, True]
    k12 = PYFEAT_AUS.index("AU12")
    assert table.loc[2, "AU12"] == pytest.approx(0.3 * k12)
    assert table.loc[2, "AU45"] == table.loc[2, "AU43"]
    assert table.loc[1, list(AU_COLUMNS)].isna().all()  # no face: no value
    with pytest.raises(UserError, match=r"frames.tsv: no row for frame \(a.001, 2\)"):
        val.planted_au_table(estimates, truth.iloc[:2])


def test_the_shuffled_control_pairs_other_people_and_loses_the_signal(tmp_path):
    folder, truth = _truth_dir(tmp_path, n=600, seed=3)
    est = _estimates(truth, np.random.default_rng(4))
    path = tmp_path / "s000.tsv"
    write_tsv(est, path)
    table, _, _ = val.validate([path], folder)
    by = table.set_index("au")
    # positive: the estimates follow AU12 and AU01; negative: against another person's
    # video (the same frames) they must not
    assert by.loc["AU12", "pearson_r"] > 0.9 and by.loc["AU01", "pearson_r"] > 0.99
    assert abs(by.loc["AU12", "shuffled_r"]) < 0.15 and abs(by.loc["AU01", "shuffled_r"]) < 0.15
    # a broken estimator that reads every face's common frame-by-frame movement passes
    # the shuffle too: the control then says so
    common = truth.groupby("frame_index")["AU12"].transform("mean")
    est["AU12"] = common.to_numpy()
    write_tsv(est, path)
    by = val.validate([path], folder)[0].set_index("au")
    assert by.loc["AU12", "shuffled_r"] > 0.3


def test_partner_videos_never_keep_the_person():
    persons = {"a.1": "a", "a.2": "a", "a.3": "a", "b.1": "b", "c.1": "c", "c.2": "c"}
    pairs = val.partner_videos(persons)
    assert set(pairs) == set(persons)
    assert all(persons[v] != persons[w] for v, w in pairs.items())
    assert val.partner_videos({"a.1": "a", "a.2": "a"}) == {}  # one person: no control


def test_the_uncalibrated_estimates_are_scored_beside_the_calibrated(tmp_path):
    folder, truth = _truth_dir(tmp_path, n=300, seed=5)
    rng = np.random.default_rng(6)
    before = _estimates(truth, rng)
    offset = before["video_id"].map({"a.001": 0.0, "b.002": 2.0, "c.001": 1.0})
    before["AU01"] = truth["AU01"] + offset  # a per-face offset: r falls across faces
    after = before.copy()
    after["AU01"] = truth["AU01"]
    paths = [tmp_path / "before.tsv", tmp_path / "after.tsv"]
    write_tsv(before, paths[0])
    write_tsv(after, paths[1])
    by = val.validate([paths[1]], folder, [paths[0]])[0].set_index("au")
    assert by.loc["AU01", "pearson_r"] == pytest.approx(1.0, abs=1e-3)
    assert by.loc["AU01", "uncalibrated_r"] < 0.5


def test_missing_ground_truth_videos_are_named(tmp_path):
    folder, truth = _truth_dir(tmp_path)
    (folder / "videos.tsv").unlink()
    path = tmp_path / "s000.tsv"
    write_tsv(_estimates(truth, np.random.default_rng(1)), path)
    with pytest.raises(UserError, match="videos.tsv"):
        val.validate([path], folder)
