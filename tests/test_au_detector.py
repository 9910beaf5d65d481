"""The detector backend without the hub: weight-file errors and the output adapter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from traitlens.aus import detector_backend as det
from traitlens.aus.estimate_aus import AU_COLUMNS, AuConfig
from traitlens.core.errors import UserError
from traitlens.faces.faces_file import FaceRows

# py-feat 2.1.5's two AU name lists (feat.multitask): the 24-AU v2.3 head and the
# shipped 20-AU v2.4 head, written out so the test needs no `import feat`
AU_NAMES_V23 = (
    "AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU11 AU12 AU14 AU15 AU16 AU17 AU18 AU20 "
    "AU23 AU24 AU25 AU26 AU27 AU28 AU43 AU45"
).split()
AU_NAMES_V24 = [a for a in AU_NAMES_V23 if a not in {"AU16", "AU18", "AU27", "AU45"}]


def test_weights_missing_names_the_file_and_where_to_get_it(tmp_path):
    with pytest.raises(UserError) as err:
        det.weight_paths(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "face_multitask_v28.safetensors" in msg
    assert "huggingface.co/py-feat/face_multitask_v2" in msg
    assert "aus.detector_weights_dir" in msg
    with pytest.raises(UserError, match="detector_weights_dir is not set"):
        det.weight_paths(None)


def test_weights_present(tmp_path):
    (tmp_path / "face_multitask_v28.safetensors").write_bytes(b"x")
    paths = det.weight_paths(tmp_path)
    assert paths["face_multitask_v28.safetensors"].is_file()


CHECK_NO_IMPORT = """
import sys
import numpy as np
from traitlens.aus import detector_backend as det
from traitlens.aus.estimate_aus import AuConfig
from traitlens.faces.faces_file import FaceRows
from traitlens.core.errors import UserError
rows = FaceRows(("a",), np.zeros(1, int), np.zeros(1, int), np.ones(1, bool), np.zeros((1, 478, 3)))
try:
    det.estimate_with_detector(rows, "frames.h5", AuConfig(detector_weights_dir=sys.argv[1]))
except UserError:
    pass
assert "feat" not in sys.modules and "torch" not in sys.modules
"""


@pytest.mark.media
def test_missing_weights_stop_before_importing_feat(tmp_path):
    # the check runs first: a missing file costs no 12 s `import feat` nor torch
    scripts = str(Path(__file__).resolve().parents[1] / "workflow_scripts")
    env = {**os.environ, "PYTHONPATH": scripts + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", CHECK_NO_IMPORT, str(tmp_path)], check=True, env=env)


def test_adapter_maps_the_shipped_20_au_head():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(4, 20))
    out = det.adapt_au_output(probs, AU_NAMES_V24)
    assert out.shape == (4, len(AU_COLUMNS))
    for j, name in enumerate(AU_NAMES_V24):
        assert np.array_equal(out[:, AU_COLUMNS.index(name)], probs[:, j])
    assert np.array_equal(out[:, AU_COLUMNS.index("AU45")], out[:, AU_COLUMNS.index("AU43")])


def test_adapter_keeps_a_real_au45_and_drops_extras():
    probs = np.arange(24, dtype=float)[None] / 24
    out = det.adapt_au_output(probs, AU_NAMES_V23)
    assert out[0, AU_COLUMNS.index("AU45")] == pytest.approx(23 / 24)
    assert out[0, AU_COLUMNS.index("AU17")] == pytest.approx(13 / 24)  # after AU16
    assert np.isfinite(out).all()


def test_adapter_matches_names_loosely_and_leaves_missing_empty():
    out = det.adapt_au_output(np.array([[0.2, 0.7]]), ["AU1", "au12"])
    assert out[0, AU_COLUMNS.index("AU01")] == 0.2
    assert out[0, AU_COLUMNS.index("AU12")] == 0.7
    assert np.isnan(out[0, AU_COLUMNS.index("AU26")])
    with pytest.raises(ValueError):
        det.adapt_au_output(np.zeros((1, 3)), ["AU01"])


def test_face_boxes_are_landmark_bounding_boxes():
    lm = np.zeros((1, 478, 3))
    lm[0, :, 0] = np.linspace(10, 50, 478)
    lm[0, :, 1] = np.linspace(20, 90, 478)
    assert np.allclose(det.face_boxes(lm), [[10, 20, 50, 90]])


def test_frames_must_match_the_faces_rows(tmp_path):
    import h5py

    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((2, 4, 4, 3), np.uint8)
        f["frame_index"] = np.array([0, 7], np.int32)
    rows = FaceRows(
        ("a",), np.zeros(2, int), np.array([0, 8]), np.ones(2, bool), np.zeros((2, 478, 3))
    )
    with pytest.raises(UserError, match="frames.h5: its frames do not match"):
        det._open_frames(path, rows)
    assert AuConfig().detector_batch > 0
