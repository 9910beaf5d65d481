"""The person baseline: each person's low AU percentile over every shard, subtracted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traitlens.aus import estimate_aus as aus
from traitlens.aus.person_baseline import calibrate_frames, calibrated_videos
from traitlens.demo.au_validation import pearson

PROVENANCE = {"au_backend": "mesh", "au_scale": "intensity", "au_baseline": "none"}


def _frames(video_ids, values_au01, success=None) -> pd.DataFrame:
    n = len(video_ids)
    table = pd.DataFrame({"video_id": video_ids, "frame_index": np.arange(n) % 10})
    table["success"] = np.ones(n, bool) if success is None else success
    values = np.zeros((n, len(aus.AU_COLUMNS)))
    values[:, aus.AU_COLUMNS.index("AU01")] = values_au01
    values[~table["success"].to_numpy()] = np.nan
    table = pd.concat([table, pd.DataFrame(values, columns=list(aus.AU_COLUMNS))], axis=1)
    return aus.with_provenance(table, PROVENANCE, after="success")


def _population(seed=0, people=12, clips=4, frames=10):
    """Two shards; each person's clips split over both; AU01 = planted + the face's
    offset + noise."""
    rng = np.random.default_rng(seed)
    video, person, planted = [], [], []
    for p in range(people):
        for c in range(clips):
            video += [f"p{p:02d}.{c:03d}"] * frames
            person += [f"p{p:02d}"] * frames
            level = rng.uniform(0, 0.6)  # the clip's own level: the trait signal
            planted += list(np.clip(level + rng.normal(0, 0.15, frames), 0, None))
    video, person, planted = np.array(video), np.array(person), np.array(planted)
    offsets = {f"p{p:02d}": rng.uniform(0, 2.0) for p in range(people)}
    estimate = planted + np.vectorize(offsets.get)(person) + rng.normal(0, 0.05, len(video))
    in_first = np.array([int(v[-1]) % 2 == 0 for v in video])  # clips 0, 2 / 1, 3
    shards = [_frames(video[m], estimate[m]) for m in (in_first, ~in_first)]
    truth = [planted[m] for m in (in_first, ~in_first)]
    groups = dict(zip(video, person, strict=True))
    return shards, truth, groups


def test_the_person_offset_goes_and_the_clip_levels_stay():
    shards, truth, groups = _population()
    before = pearson(pd.concat(shards)["AU01"], np.concatenate(truth))
    after_tables = calibrate_frames(shards, groups, 5.0, "manifest.tsv")
    after = pearson(pd.concat(after_tables)["AU01"], np.concatenate(truth))
    assert before < 0.5 < 0.85 < after  # offsets of up to 2 across faces: r falls, then back
    # the per-video baseline (OpenFace-style) removes the clip levels with the offsets
    both = pd.concat(shards, ignore_index=True)
    video_codes = pd.factorize(both["video_id"])[0]
    per_video = aus.subtract_baseline(both[list(aus.AU_COLUMNS)].to_numpy(), video_codes, 5.0)
    assert pearson(per_video[:, 0], np.concatenate(truth)) < after - 0.15
    # layout, order, provenance
    for original, calibrated in zip(shards, after_tables, strict=True):
        assert list(calibrated.columns) == list(original.columns)
        assert calibrated["video_id"].tolist() == original["video_id"].tolist()
        assert (calibrated["au_baseline"] == "person_p5").all()
        assert (calibrated[list(aus.AU_COLUMNS)].min() >= 0).all()


def test_the_baseline_is_each_persons_over_every_shard():
    # person a: 0.2 in shard 1, 0.8 in shard 2; a per-shard minimum would zero both
    shards = [_frames(["a.1"] * 3, [0.2, 0.3, 0.4]), _frames(["a.2"] * 3, [0.8, 0.9, 1.0])]
    out = calibrate_frames(shards, {"a.1": "a", "a.2": "a"}, 0.0, "manifest.tsv")
    assert out[0]["AU01"].tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert out[1]["AU01"].tolist() == pytest.approx([0.6, 0.7, 0.8])


def test_frames_without_a_face_stay_empty_and_are_not_counted():
    success = np.array([True, False, True])
    table = _frames(["a.1"] * 3, [0.5, 0.0, 0.7], success=success)
    table.loc[1, "AU01"] = -5.0  # a stray value on a failed row must not set the baseline
    out = calibrate_frames([table], {"a.1": "a"}, 0.0, "manifest.tsv")[0]
    assert out["AU01"].iloc[[0, 2]].tolist() == pytest.approx([0.0, 0.2])
    assert np.isnan(out["AU01"].iloc[1])


def test_a_video_the_manifest_lacks_is_its_own_person_and_named(caplog):
    # an unlabelled video: extracted, but not in the manifest
    shards = [_frames(["a.1", "a.2", "zz.9", "zz.9"], [0.1, 0.5, 0.3, 0.4])]
    with caplog.at_level("WARNING"):
        out = calibrate_frames(shards, {"a.1": "a", "a.2": "a"}, 0.0, "results/x/manifest.tsv")
    assert out[0]["AU01"].tolist() == pytest.approx([0.0, 0.4, 0.0, 0.1])
    assert "results/x/manifest.tsv" in caplog.text and "zz.9" in caplog.text


def test_video_table_of_calibrated_frames_keeps_every_video():
    frames = _frames(["a.1"] * 2 + ["b.1"] * 2, [0.4, 0.6, 0.1, 0.3])
    calibrated = calibrate_frames([frames], {"a.1": "a", "b.1": "b"}, 0.0, "m.tsv")[0]
    before = aus.with_provenance(
        aus.video_means(frames, ("a.1", "b.1", "c.1")), PROVENANCE, after="n_frames"
    )
    videos = calibrated_videos(calibrated, before)
    assert list(videos.columns) == list(before.columns)
    assert videos["video_id"].tolist() == ["a.1", "b.1", "c.1"]  # c.1: no usable frame
    assert videos["n_frames"].tolist() == [2, 2, 0]
    assert videos["AU01"].iloc[:2].tolist() == pytest.approx([0.1, 0.1])
    assert np.isnan(videos["AU01"].iloc[2])
    assert (videos["au_baseline"] == "person_p0").all()


def test_the_shard_stage_refuses_the_person_baseline():
    cfg = aus.AuConfig(baseline="person")
    with pytest.raises(ValueError, match="calibrate_aus"):
        aus.estimate_shard("unused.h5", cfg)
