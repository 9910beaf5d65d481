"""TSV intermediates: a missing, empty, cut-short or foreign table names the file, the
problem and the rule that rebuilds it, through every reader the later rules use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from traitlens.aus import estimate_aus as aus
from traitlens.core.errors import UserError
from traitlens.core.tables import read_table
from traitlens.faces import faces_qc
from traitlens.ingest.labels import BIG_FIVE
from traitlens.ingest.manifest import manifest_columns, to_tsv
from traitlens.models import predictions
from traitlens.models.au_regression import read_au_videos

IDS = [f"v{i:03d}.001" for i in range(12)]


def au_frames(path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"video_id": np.repeat(IDS, 3), "frame_index": np.tile([0, 5, 9], 12)})
    table["success"] = True
    for au in aus.AU_COLUMNS:
        table[au] = rng.random(len(table))
    aus.write_tsv(table, path)


def au_videos(path):
    frames = path.parent / "frames.tsv"
    au_frames(frames)
    aus.write_tsv(aus.video_means(aus.read_frame_table(frames)), path)


def face_qc(path):
    rows = [faces_qc.video_qc_row(v, np.ones(3, bool), np.ones(3, np.int8), []) for v in IDS]
    faces_qc.write_face_qc(path, rows)


def prediction_table(path):
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"video_id": IDS, "split": ["train", "validation", "test"] * 4})
    for trait in BIG_FIVE:
        table[trait] = rng.random(len(IDS))
    predictions.write_predictions(table, path)


def manifest(path):
    """As build_manifest writes it (ingest.to_tsv, with the path and shard columns)."""
    rows = [
        {"video_id": v, "path": f"/v/{v}.mp4", "split": "train", "shard": "s000"}
        | dict.fromkeys(BIG_FIVE, 0.5)
        for v in IDS
    ]
    path.write_text(to_tsv(rows, [*manifest_columns(False), "shard"]))


# (writer, the reader a later rule calls, the rule that rebuilds the file)
CASES = {
    "AU frames": (au_frames, aus.read_frame_table, "estimate_aus"),
    "AU videos": (au_videos, read_au_videos, "estimate_aus"),
    "face QC": (face_qc, faces_qc.read_face_qc, "detect_faces"),
    "predictions": (
        prediction_table,
        lambda p: predictions.read_predictions(p, "predict_visual"),
        "predict_visual",
    ),
    "manifest": (manifest, predictions.read_labels, "build_manifest"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_complete_table_reads_back(case, tmp_path):
    write, read, _ = CASES[case]
    write(tmp_path / "t.tsv")
    assert len(read(tmp_path / "t.tsv")) == 12 * (3 if case == "AU frames" else 1)


@pytest.mark.parametrize("damage", ["cut", "empty", "missing", "folder"])
@pytest.mark.parametrize("case", CASES)
def test_a_damaged_table_names_file_problem_and_rule(case, damage, tmp_path):
    write, read, rule = CASES[case]
    path = tmp_path / "t.tsv"
    write(path)
    data = path.read_bytes()
    if damage == "cut":
        path.write_bytes(data[: int(len(data) * 0.6)])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "missing":
        path.unlink()
    else:
        path.unlink()
        path.mkdir()
    expected = {
        "cut": "the file is truncated",
        "empty": "the file is empty",
        "missing": "the file does not exist",
        "folder": "a folder, not a file",
    }[damage]
    with pytest.raises(UserError) as err:
        read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a readable ") and expected in message
    assert f"the {rule} rule rebuilds it" in message and f"--forcerun {path}" in message


def test_a_table_with_only_its_header_is_an_empty_table(tmp_path):
    faces_qc.write_face_qc(tmp_path / "t.tsv", [])  # a shard whose videos all failed
    table = faces_qc.read_face_qc(tmp_path / "t.tsv")
    assert table.empty and list(table.columns) == list(faces_qc.FACE_QC_COLUMNS)


def test_a_foreign_table_lists_the_missing_columns(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(UserError, match=r"missing columns \['video_id', 'status'\]"):
        read_table(path, "video QC", "extract_shard", ["video_id", "status"])


def test_a_cut_between_two_rows_cannot_be_seen(tmp_path):
    """The limit of the check, pinned: whole rows are a valid shorter table."""
    path = tmp_path / "t.tsv"
    prediction_table(path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]))
    assert len(predictions.read_predictions(path, "predict_visual")) == 4
