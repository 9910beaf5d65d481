"""QC summary: the contract's columns and the failed-fraction budget."""

from __future__ import annotations

import pandas as pd
import pytest

from traitlens.core.errors import UserError
from traitlens.extract.qc import QC_COLUMNS, check_failure_budget, combine_shard_qc


def shard(rows):
    return pd.DataFrame(rows, columns=["video_id", "status", "reason", "n_frames"])


def test_combine_orders_columns_and_rows():
    qc = combine_shard_qc(
        [shard([["b", "ok", "", 10]]), shard([["a", "failed", "moov atom not found", 0]])]
    )
    assert list(qc.columns) == QC_COLUMNS
    assert list(qc["video_id"]) == ["a", "b"]
    assert qc["n_faces"].isna().all()


def test_budget_passes_at_the_threshold_and_fails_above_it():
    rows = [[f"v{i}", "ok", "", 10] for i in range(19)] + [["bad", "failed", "truncated", 0]]
    qc = combine_shard_qc([shard(rows)])
    assert check_failure_budget(qc, 0.05) == "19 of 20 videos extracted, 1 failed (5.0%)"
    with pytest.raises(UserError) as err:
        check_failure_budget(qc, 0.04)
    assert "bad: truncated" in str(err.value) and "max_failed_fraction" in str(err.value)


def test_face_counts_fill_n_faces_and_failed_videos_get_zero():
    qc = combine_shard_qc(
        [shard([["a", "ok", "", 10], ["b", "failed", "moov atom not found", 0]])],
        n_faces={"a": 9},
    )
    assert dict(zip(qc["video_id"], qc["n_faces"], strict=True)) == {"a": 9, "b": 0}
