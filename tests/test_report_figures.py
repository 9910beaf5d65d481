"""The report's own summaries (issue 16): the QC section (traitlens.faces.qc_report), the
model comparisons' figure (traitlens.evaluation.comparison_figure), the AU-emergence
nulls' figure (traitlens.interpret.emergence_null_figure) and the planted-truth scorecard
(traitlens.demo.planted_figure), on small hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from traitlens.core.errors import UserError
from traitlens.demo.planted_figure import goal_rows, plot_planted, read_planted
from traitlens.evaluation.comparison_figure import plot_comparisons, read_comparisons
from traitlens.faces.qc_report import (
    QcTables,
    combine_face_qc,
    problem_tables,
    qc_counts,
    read_qc_tables,
    reason_counts,
    render_page,
    write_report_qc,
)
from traitlens.interpret.emergence_null_figure import null_rates, plot_emergence_null


def qc_tables() -> QcTables:
    """Six videos, each with one of the problems the QC section reports, and one left out."""
    videos = pd.DataFrame(
        {
            "video_id": ["ok1", "broken", "noface", "partial", "silent", "twofaces"],
            "status": ["ok", "failed", "ok", "ok", "ok", "ok"],
            "reason": ["", "truncated <moov>", "", "", "", ""],
            "duration_s": [2.0, np.nan, 2.0, 2.0, 2.0, 2.0],
            "fps": [10.0, np.nan, 10.0, 10.0, 10.0, 10.0],
            "width": [384, np.nan, 384, 384, 384, 384],
            "height": [216, np.nan, 216, 216, 216, 216],
            "has_audio": ["true", "", "true", "true", "false", "true"],
            "n_frames": [10, np.nan, 10, 10, 10, 10],
            "n_faces": [10, 0, 0, 7, 10, 10],
        }
    )
    faces = pd.DataFrame(
        {
            "video_id": ["ok1", "noface", "partial", "silent", "twofaces"],
            "n_frames": [10, 10, 10, 10, 10],
            "n_faces": [10, 0, 7, 10, 10],
            "multiple_faces_seen": [False, False, False, False, True],
            "reason": ["", "no face: 10", "mesh failed: 1; no face: 2", "", ""],
        }
    )
    ingest = pd.DataFrame(
        {"video_id": ["lost"], "path": ["v/lost.mp4"], "problem": ["video file has no label"]}
    )
    return QcTables(videos, faces, ingest)


def test_reason_counts_sum_the_frames_of_each_reason():
    cells = ["no face: 10", "mesh failed: 1; no face: 2", "", "no frames"]
    assert reason_counts(cells) == {"no face": 12, "mesh failed": 1, "no frames": 1}
    assert reason_counts(["", ""]) == {}


def test_qc_counts_count_each_problem_once():
    counts = dict(qc_counts(qc_tables()))
    assert counts == {
        "in the manifest": 6,
        "left out at ingest (no label or no file)": 1,
        "extracted": 5,
        "failed extraction": 1,
        "extracted, no audio stream": 1,
        "a face in every frame": 3,
        "a face in some frames only": 1,
        "no face in any frame": 1,
        "several faces seen": 1,
    }


def test_the_page_lists_only_the_videos_worth_a_look_and_escapes_them():
    tables = qc_tables()
    problems = dict(problem_tables(tables))
    assert list(problems["Videos that failed extraction"]["video_id"]) == ["broken"]
    assert list(problems["Videos with frames without a face"]["video_id"]) == ["noface", "partial"]
    assert list(problems["Videos where several faces were seen"]["video_id"]) == ["twofaces"]
    assert list(problems["Extracted videos without an audio stream"]["video_id"]) == ["silent"]
    page = render_page(qc_counts(tables), problem_tables(tables))
    assert "Videos that failed extraction (1)" in page and "truncated &lt;moov&gt;" in page
    assert "<moov>" not in page and "<script" not in page
    assert ">ok1<" not in page  # a video without problems is not listed
    clean = QcTables(tables.videos.iloc[[0]], tables.faces.iloc[[0]], tables.ingest.iloc[:0])
    clean_page = render_page(qc_counts(clean), problem_tables(clean))
    assert clean_page.count('<p class="none">none</p>') == 5


def _is_drawn(path) -> bool:
    image = Image.open(path).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or []) > 50


def test_report_qc_reads_the_tables_and_writes_its_three_outputs(tmp_path):
    tables = qc_tables()
    tables.videos.to_csv(tmp_path / "videos.tsv", sep="\t", index=False)
    shards = []
    for i, part in enumerate((tables.faces.iloc[3:], tables.faces.iloc[:3])):
        path = tmp_path / f"s{i:03d}.tsv"
        part.assign(multiple_faces_seen=part["multiple_faces_seen"].map(str).str.lower()).to_csv(
            path, sep="\t", index=False
        )
        shards.append(path)
    tables.ingest.to_csv(tmp_path / "ingest.tsv", sep="\t", index=False)
    read = read_qc_tables(tmp_path / "videos.tsv", shards, tmp_path / "ingest.tsv")
    assert list(read.faces["video_id"]) == sorted(tables.faces["video_id"])  # shards joined
    counts = write_report_qc(
        read,
        faces_out=tmp_path / "faces.tsv",
        figure_out=tmp_path / "qc.png",
        page_out=tmp_path / "summary.html",
    )
    assert dict(counts) == dict(qc_counts(tables))
    assert len(pd.read_csv(tmp_path / "faces.tsv", sep="\t")) == 5
    assert _is_drawn(tmp_path / "qc.png")
    assert "partial" in (tmp_path / "summary.html").read_text()
    assert not list(tmp_path.glob(".tmp-*"))
    # a face QC table cut short is named, not a traceback
    (tmp_path / "s000.tsv").write_text("video_id\tn_frames\n")
    with pytest.raises(UserError, match="s000.tsv"):
        read_qc_tables(tmp_path / "videos.tsv", shards, tmp_path / "ingest.tsv")


def test_combine_face_qc_of_no_shards_is_an_empty_table():
    assert combine_face_qc([]).empty


COMPARISONS = pd.DataFrame(
    {
        "comparison": ["face - img", "img+audio - img"],
        "split": ["test", "test"],
        "diff_mean_accuracy": [0.02, 0.004],
        "ci_low": [0.01, -0.002],
        "ci_high": [0.03, 0.01],
        "p_value": [0.001, 0.3],
        "n_videos": [80, 80],
        "n_groups": [8, 8],
        "n_boot": [2000, 2000],
    }
)


def test_comparisons_figure_is_drawn_from_the_table(tmp_path):
    COMPARISONS.to_csv(tmp_path / "comparisons.tsv", sep="\t", index=False)
    plot_comparisons(read_comparisons(tmp_path / "comparisons.tsv"), tmp_path / "c.png", 0.95)
    assert _is_drawn(tmp_path / "c.png")
    COMPARISONS.drop(columns="ci_high").to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(UserError, match="bad.tsv.*ci_high"):
        read_comparisons(tmp_path / "bad.tsv")


NULL = pd.DataFrame(
    {
        "au": ["AU01", "AU02", "all"],
        "n_permutations": [200, 0, 200],
        "false_positive_rate": [0.01, np.nan, 0.01],
        "false_positive_rate_within_video": [1.0, np.nan, 1.0],
        "cluster_null_draws": [50, 50, 50],
        "cluster_false_positive_rate": [0.02, np.nan, 0.02],
    }
)


def test_null_rates_carry_wilson_intervals_over_their_draws():
    rates = null_rates(NULL, 0.95)
    assert "AU02" not in set(rates["au"])  # a constant AU is not tested
    assert len(rates) == 3 * 2
    assert (rates["low"] <= rates["rate"]).all() and (rates["rate"] <= rates["high"]).all()
    verdict = rates[rates["null"].str.startswith("verdict")].set_index("au")
    assert verdict.loc["AU01", "n"] == 50
    assert verdict.loc["all", "n"] == 50  # pooled over the one AU tested
    within = rates[rates["null"].str.contains("within")].set_index("au")
    assert within.loc["AU01", "high"] == 1.0 and within.loc["AU01", "low"] < 1.0
    # a table without the optional nulls (an older run) still plots its first
    old = NULL[["au", "n_permutations", "false_positive_rate"]]
    assert set(null_rates(old, 0.95)["null"]) == {rates["null"].iloc[0]}
    assert math.isclose(null_rates(old, 0.95)["rate"].iloc[0], 0.01)


def test_null_figure_is_drawn(tmp_path):
    plot_emergence_null(NULL, 0.01, tmp_path / "null.png")
    assert _is_drawn(tmp_path / "null.png")


PLANTED = {
    "cam_ideal_overlap_share": 1.0,
    "n_detectors": 9,
    "n_detectors_random_init": 0,
    "detector_precision": None,
    "null_false_positive_rate": 0.007,
    "goals": {
        "cam_ideal_overlap_share": {"op": ">=", "value": 0.95, "goal": ">= 0.95", "met": True},
        "n_detectors": {"op": ">=", "value": 10.0, "goal": ">= 10", "met": False},
        "n_detectors_random_init": {"op": "<=", "value": None, "factor": 0.1,
                                    "of": "n_detectors", "goal": "<= 0.1 x n_detectors",
                                    "met": None},
        "detector_precision": {"op": ">=", "value": 0.9, "goal": ">= 0.9", "met": None},
        "null_false_positive_rate": {"op": "in", "value": [0.0, 0.02], "goal": "in [0, 0.02]",
                                     "met": True},
    },
}  # fmt: skip


def test_goal_rows_give_each_goal_its_zone_and_value():
    rows = {row["key"]: row for row in goal_rows(PLANTED)}
    assert list(rows) == list(PLANTED["goals"])
    assert rows["cam_ideal_overlap_share"]["zone"] == (0.95, math.inf)
    assert rows["n_detectors"]["zone"] == (10.0, math.inf) and rows["n_detectors"]["value"] == 9
    assert rows["null_false_positive_rate"]["zone"] == (0.0, 0.02)
    assert rows["n_detectors_random_init"]["zone"] is None  # its bound was not measured
    assert rows["detector_precision"]["value"] is None and rows["detector_precision"]["met"] is None


def test_planted_scorecard_is_drawn_and_a_bad_score_file_is_named(tmp_path):
    import json

    (tmp_path / "planted.json").write_text(json.dumps(PLANTED))
    plot_planted(read_planted(tmp_path / "planted.json"), tmp_path / "planted.png")
    assert _is_drawn(tmp_path / "planted.png")
    (tmp_path / "cut.json").write_text(json.dumps(PLANTED)[:50])
    with pytest.raises(UserError, match="cut.json.*validate_planted"):
        read_planted(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text(json.dumps({"n_detectors": 3}))
    with pytest.raises(UserError, match="other.json: no 'goals'"):
        read_planted(tmp_path / "other.json")
