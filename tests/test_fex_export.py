"""What the AU tables say about their numbers (backend, scale, baseline), and their
export as py-feat's Fex, read back with py-feat's own reader."""

from __future__ import annotations

import numpy as np
import pandas as pd

from traitlens.aus import estimate_aus as aus
from traitlens.aus.fex_export import fex_table, to_fex, write_fex_csv
from traitlens.faces.faces_file import FaceRows
from traitlens.models.au_regression import read_au_videos


def frames_with_provenance(cfg: aus.AuConfig) -> pd.DataFrame:
    """Two videos, five frames, the second without a face, as estimate_shard builds them."""
    rows = FaceRows(
        ("vid0.001", "vid1.001"),
        np.array([0, 0, 0, 1, 1]),
        np.array([0, 5, 10, 0, 5]),
        np.array([True, False, True, True, True]),
        np.zeros((5, 478, 3), np.float32),
    )
    values = np.random.default_rng(0).uniform(size=(5, len(aus.AU_COLUMNS)))
    frames = aus.frame_table(rows, values)
    return aus.with_provenance(frames, aus.provenance(cfg), after="success")


def test_each_backend_records_its_scale():
    mesh = aus.provenance(aus.AuConfig(backend="mesh"))
    assert mesh == {"au_backend": "mesh", "au_scale": "intensity", "au_baseline": "none"}
    detector = aus.provenance(aus.AuConfig(backend="detector", baseline="video"))
    assert detector["au_scale"] == "probability" and detector["au_baseline"] == "video_p5"
    finer = aus.provenance(aus.AuConfig(baseline="video", baseline_percentile=2.5))
    assert finer["au_baseline"] == "video_p2.5"


def test_provenance_sits_between_the_keys_and_the_aus_and_every_reader_takes_it(tmp_path):
    frames = frames_with_provenance(aus.AuConfig(backend="detector"))
    assert tuple(frames.columns) == (
        *aus.KEY_COLUMNS,
        *aus.PROVENANCE_COLUMNS,
        *aus.AU_COLUMNS,
    )
    aus.write_tsv(frames, tmp_path / "s000.tsv")
    back = aus.read_frame_table(tmp_path / "s000.tsv")
    assert set(back["au_scale"]) == {"probability"}
    videos = aus.with_provenance(aus.video_means(back), aus.provenance(aus.AuConfig()), "n_frames")
    aus.write_tsv(videos, tmp_path / "s000.videos.tsv")
    features = read_au_videos(tmp_path / "s000.videos.tsv")
    assert list(features.columns) == list(aus.OPENFACE_17)
    # tables from before the provenance columns still read
    aus.write_tsv(frames.drop(columns=list(aus.PROVENANCE_COLUMNS)), tmp_path / "old.tsv")
    assert "au_scale" not in aus.read_frame_table(tmp_path / "old.tsv")


def test_fex_layout_is_detectorv2s():
    frames = frames_with_provenance(aus.AuConfig())
    table = fex_table(frames)
    assert list(table.columns) == ["input", "frame", *aus.PYFEAT_AUS, *aus.PROVENANCE_COLUMNS]
    assert table["input"].tolist() == frames["video_id"].tolist()
    assert table.loc[1, list(aus.PYFEAT_AUS)].isna().all()  # no face: an empty row, kept


def test_the_export_reads_back_with_feats_reader_as_the_same_numbers(tmp_path):
    from feat import Fex
    from feat.utils.io import read_feat

    frames = frames_with_provenance(aus.AuConfig(backend="detector"))
    aus.write_tsv(frames, tmp_path / "s000.tsv")
    frames = aus.read_frame_table(tmp_path / "s000.tsv")  # the 4-decimal numbers on disk
    write_fex_csv(frames, tmp_path / "s000.fex.csv")
    fex = read_feat(str(tmp_path / "s000.fex.csv"))
    assert isinstance(fex, Fex)
    assert fex.au_columns == list(aus.PYFEAT_AUS)
    expected = frames[list(aus.PYFEAT_AUS)].to_numpy()
    assert np.array_equal(fex.aus.to_numpy(), expected, equal_nan=True)
    assert fex["au_scale"].tolist() == ["probability"] * len(frames)
    in_memory = to_fex(frames)
    assert np.array_equal(in_memory.aus.to_numpy(), expected, equal_nan=True)
    assert in_memory.au_model == "traitlens detector backend"
    # control: the frame table saved as it is would bring our AU45 in as a 21st AU
    frames.to_csv(tmp_path / "as_is.csv", index=False)
    assert read_feat(str(tmp_path / "as_is.csv")).au_columns == list(aus.AU_COLUMNS)
