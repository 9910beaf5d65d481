"""Annotation pickles: Python 2 files with numpy scalars load; anything else is refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE, read_annotations

from support.pickles import code_running_pickle, python2_label_pickle

TRAITS = (*BIG_FIVE, "interview")


def labels_for(videos: dict[str, float]) -> dict[str, dict[str, float]]:
    return {t: {f"{v}.mp4": x for v, x in videos.items()} for t in TRAITS}


def test_python2_pickle_with_numpy_scalars_loads(tmp_path):
    path = tmp_path / "annotation_training.pkl"
    path.write_bytes(
        python2_label_pickle(labels_for({"--Ymqszjv54.001": 0.6, "abcdefghijk.002": 0.25}))
    )
    labels = read_annotations(path)
    assert labels["--Ymqszjv54.001"]["openness"] == pytest.approx(0.6)
    assert labels["abcdefghijk.002"]["interview"] == pytest.approx(0.25)
    assert all(type(v) is float for lab in labels.values() for v in lab.values())


def test_python3_pickle_of_numpy_float64_loads(tmp_path):
    path = tmp_path / "a.pkl"
    obj = {t: {"x.001.mp4": np.float64(0.5)} for t in BIG_FIVE}
    path.write_bytes(pickle.dumps(obj, protocol=2))
    assert read_annotations(path) == {"x.001": {t: 0.5 for t in BIG_FIVE}}


def test_code_running_payload_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "annotation_test.pkl"
    path.write_bytes(code_running_pickle(str(marker)))
    with pytest.raises(UserError, match=r"os\.system") as err:
        read_annotations(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


def test_numpy_array_payload_is_refused(tmp_path):
    # Only numpy *scalars* are admitted: an ndarray goes through other globals.
    path = tmp_path / "arr.pkl"
    path.write_bytes(pickle.dumps({t: {"x.mp4": np.zeros(3)} for t in BIG_FIVE}, protocol=2))
    with pytest.raises(UserError, match="refused"):
        read_annotations(path)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1.5, "1.5"), (-0.1, "-0.1"), (float("nan"), "nan"), ("0.5", "'0.5'"), (None, "None")],
)
def test_bad_label_values_are_named(tmp_path, value, shown):
    obj = labels_for({"good.001": 0.5})
    obj["neuroticism"]["bad.001.mp4"] = value
    for t in TRAITS:
        obj[t].setdefault("bad.001.mp4", 0.5)
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UserError) as err:
        read_annotations(path)
    message = str(err.value)
    assert str(path) in message and "neuroticism" in message and "bad.001.mp4" in message
    assert shown in message


def test_missing_trait_key_is_named(tmp_path):
    obj = labels_for({"a.001": 0.5})
    del obj["agreeableness"]
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UserError, match="agreeableness") as err:
        read_annotations(path)
    assert str(path) in str(err.value) and "all five traits" in str(err.value)


def test_video_missing_from_one_trait_is_named(tmp_path):
    obj = labels_for({"a.001": 0.5, "b.001": 0.4})
    del obj["openness"]["b.001.mp4"]
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UserError, match=r"'b\.001' has no value for openness"):
        read_annotations(path)


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(python2_label_pickle(labels_for({"a.001": 0.5}))[:20])
    with pytest.raises(UserError, match="cut.pkl"):
        read_annotations(path)
    with pytest.raises(UserError, match="not found"):
        read_annotations(tmp_path / "absent.pkl")
