"""A damaged intermediate names itself and the rule that rebuilds it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked


def test_truncated_file_names_file_and_rule(tmp_path):
    path = tmp_path / "s000.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((50, 32, 32, 3), np.uint8)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        open_checked(path, "frames", "extract_shard", ["frames"])
    assert str(path) in str(err.value) and "extract_shard rule rebuilds it" in str(err.value)


def test_missing_dataset_is_named(tmp_path):
    path = tmp_path / "s001.h5"
    with h5py.File(path, "w") as f:
        f["frames"] = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(UserError, match=r"missing dataset\(s\) \['video_index'\]"):
        open_checked(path, "frames", "extract_shard", ["frames", "video_index"])
    with open_checked(path, "frames", "extract_shard", ["frames"]) as f:
        assert f["frames"].shape == (1, 2, 2, 3)


def test_as_str_decodes_hdf5_strings():
    assert as_str(b"--Ymqszjv54.001") == "--Ymqszjv54.001" and as_str("x") == "x"
