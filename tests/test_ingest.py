"""Ingest: videos and labels joined into the manifest; every mismatch is reported."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.ingest.manifest import (
    Labelled,
    build_manifest,
    labels_from_manifest_rows,
    manifest_columns,
    merge_splits,
    read_groups,
    to_tsv,
    youtube_group,
)
from traitlens.ingest.rules import build_manifest as build_manifest_rule
from traitlens.ingest.sources import discover_videos, manifest_videos, read_manifest_rows


def traits(x: float, interview: bool = True) -> dict[str, float]:
    out = {t: x for t in BIG_FIVE}
    if interview:
        out["interview"] = x
    return out


def test_merge_splits_maps_names_and_rejects_a_video_in_two_splits():
    merged = merge_splits(
        {
            "training": ("train.pkl", {"a.001": traits(0.1)}),
            "validation": ("val.pkl", {"b.001": traits(0.2)}),
            "test": ("test.pkl", {"c.001": traits(0.3)}),
        }
    )
    assert {v: m.split for v, m in merged.items()} == {
        "a.001": "train",
        "b.001": "validation",
        "c.001": "test",
    }
    with pytest.raises(UserError, match=r"'a\.001' in train\.pkl and test\.pkl"):
        merge_splits(
            {
                "training": ("train.pkl", {"a.001": traits(0.1)}),
                "test": ("test.pkl", {"a.001": traits(0.3)}),
            }
        )


def test_build_manifest_joins_and_reports_unmatched():
    labels = {
        "-dash.001": Labelled("train", traits(0.4), "train.pkl"),
        "nofile.001": Labelled("test", traits(0.5), "test.pkl"),
    }
    videos = [
        ("-dash.001", "/v/-dash.001.mp4", "s001"),
        ("nolabel.001", "/v/nolabel.001.mp4", "s000"),
    ]
    result = build_manifest(videos, labels)
    assert [r["video_id"] for r in result.rows] == ["-dash.001"]
    assert result.rows[0]["shard"] == "s001" and result.rows[0]["interview"] == 0.4
    problems = {u["video_id"]: u["problem"] for u in result.unmatched}
    assert (
        "no readable video file" in problems["nofile.001"] and "test.pkl" in problems["nofile.001"]
    )
    assert problems["nolabel.001"] == "video file has no label"
    text = to_tsv(result.rows, manifest_columns(result.has_interview))
    assert text.splitlines()[0].split("\t") == [
        "video_id",
        "path",
        "split",
        "group",
        *BIG_FIVE,
        "interview",
        "shard",
    ]


def test_interview_column_only_when_every_video_has_it():
    labels = {
        "a.001": Labelled("train", traits(0.4), "x"),
        "b.001": Labelled("train", traits(0.4, interview=False), "x"),
    }
    result = build_manifest([("a.001", "a", "s0"), ("b.001", "b", "s0")], labels)
    assert not result.has_interview and "interview" not in manifest_columns(False)


def test_discover_videos_recursive_unique_and_loop_safe(tmp_path):
    (tmp_path / "train-1" / "training80_01").mkdir(parents=True)
    (tmp_path / "test-1").mkdir()
    (tmp_path / "train-1" / "training80_01" / "--Ymqszjv54.001.mp4").write_bytes(b"x")
    (tmp_path / "test-1" / "été vidéo.002.mp4").write_bytes(b"x")
    (tmp_path / "test-1" / "notes.txt").write_text("not a video")
    (tmp_path / "test-1" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "test-1" / "dangling.001.mp4").symlink_to(tmp_path / "absent.mp4")
    found = discover_videos(tmp_path)
    assert [v.video_id for v in found] == ["--Ymqszjv54.001", "été vidéo.002"]
    (tmp_path / "test-1" / "--Ymqszjv54.001.mp4").write_bytes(b"y")
    with pytest.raises(UserError, match="found twice"):
        discover_videos(tmp_path)
    with pytest.raises(UserError, match="videos folder not found"):
        discover_videos(tmp_path / "absent")


@pytest.mark.parametrize(
    ("video_id", "group"),
    [
        ("--Ymqszjv54.001", "--Ymqszjv54"),  # First Impressions: <YouTube id>.<NNN>
        ("abc.def.002", "abc.def"),  # only the last .NNN is the clip number
        ("été vidéo.010", "été vidéo"),
        ("noclip", None),
        ("clip.1", None),
        ("clip.0001", None),
        ("clip.abc", None),
        (".001", None),
    ],
)
def test_youtube_group_of_a_clip_id(video_id, group):
    assert youtube_group(video_id) == group


def test_first_impressions_ids_give_person_groups(tmp_path):
    """The demo and First Impressions share the id scheme: clips of one YouTube id are one
    group, an id off the scheme is its own group and is listed once."""
    merged = merge_splits(
        {
            "training": ("train.pkl", {"--Ymqszjv54.001": traits(0.1), "noclip": traits(0.2)}),
            "test": ("test.pkl", {"--Ymqszjv54.002": traits(0.3), "abc.def.002": traits(0.4)}),
        }
    )
    ids = sorted(merged)
    result = build_manifest([(v, f"/v/{v}.mp4", "s0") for v in ids], merged)
    groups = {r["video_id"]: r["group"] for r in result.rows}
    assert groups == {
        "--Ymqszjv54.001": "--Ymqszjv54",
        "--Ymqszjv54.002": "--Ymqszjv54",
        "abc.def.002": "abc.def",
        "noclip": "noclip",
    }
    assert result.own_groups == ["noclip"]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text(to_tsv(result.rows, manifest_columns(result.has_interview)))
    assert read_groups(manifest) == groups


def test_read_groups_refuses_a_manifest_without_groups(tmp_path):
    old = tmp_path / "manifest.tsv"
    old.write_text("video_id\tpath\tsplit\nNA\tx.mp4\ttrain\n")  # before the group column
    with pytest.raises(UserError, match=r"manifest\.tsv.*missing columns \['group'\]"):
        read_groups(old)
    old.write_text("video_id\tgroup\nNA\tnull\nb\tNA\n")  # such names stay strings
    assert read_groups(old) == {"NA": "null", "b": "NA"}
    old.write_text("video_id\tgroup\na\t\n")
    with pytest.raises(UserError, match="empty 'group'.*a.*build_manifest"):
        read_groups(old)


def write_manifest(path, rows, extra=()):
    header = ["video_id", "path", "split", *BIG_FIVE, *extra]
    path.write_text("\n".join(["\t".join(header), *("\t".join(map(str, r)) for r in rows)]) + "\n")


def test_manifest_paths_resolve_next_to_the_manifest(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"x")
    manifest = tmp_path / "manifest.tsv"
    write_manifest(
        manifest,
        [["a", "clips/a.mp4", "train", *[0.5] * 5], ["b", "clips/b.mp4", "test", *[0.5] * 5]],
    )
    assert [(v.video_id, v.path) for v in manifest_videos(manifest)] == [
        ("a", str(tmp_path / "clips" / "a.mp4"))
    ]
    labels = labels_from_manifest_rows(read_manifest_rows(manifest), str(manifest))
    assert labels["b"].split == "test" and labels["a"].traits["openness"] == 0.5


def test_manifest_bad_rows_are_named(tmp_path):
    manifest = tmp_path / "m.tsv"
    write_manifest(
        manifest,
        [["a", "a.mp4", "holdout", *[0.5] * 5], ["b", "b.mp4", "train", 0.5, "high", 0.5, 2, 0.5]],
    )
    with pytest.raises(UserError) as err:
        labels_from_manifest_rows(read_manifest_rows(manifest), str(manifest))
    message = str(err.value)
    assert "line 2: split 'holdout'" in message
    assert "line 3: conscientiousness is 'high'" in message and "agreeableness is '2'" in message


def test_manifest_paths_outside_its_folder_are_refused(tmp_path):
    data = tmp_path / "data"
    (data / "clips").mkdir(parents=True)
    (data / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    manifest = data / "m.tsv"
    inside = [
        ["a", "clips/a.mp4", "train", *[0.5] * 5],
        ["b", "clips/../clips/b.mp4", "train", *[0.5] * 5],  # back inside: fine
        ["c", str(data / "clips" / "c.mp4"), "test", *[0.5] * 5],  # absolute, inside
        ["d", "linked/d.mp4", "test", *[0.5] * 5],  # a link the user put in the folder
    ]
    write_manifest(manifest, inside)
    assert [r["video_id"] for r in read_manifest_rows(manifest)] == ["a", "b", "c", "d"]
    outside = [
        ["e", "../e.mp4", "train", *[0.5] * 5],
        ["f", str(tmp_path / "f.mp4"), "test", *[0.5] * 5],
        ["g", "clips/../../data2/g.mp4", "test", *[0.5] * 5],
    ]
    write_manifest(manifest, inside + outside)
    with pytest.raises(UserError) as err:
        read_manifest_rows(manifest)
    message = str(err.value)
    assert message.startswith(f"{manifest}: 3 row(s) name a video outside")
    assert "line 6: e: ../e.mp4" in message and f"line 7: f: {tmp_path / 'f.mp4'}" in message
    assert "line 8: g: clips/../../data2/g.mp4" in message
    assert "line 2" not in message and "Put the manifest in the folder" in message
    assert "dataset.manifest_paths_outside: true" in message
    # the opt-out: every row is read, paths resolved as before
    rows = read_manifest_rows(manifest, allow_outside=True)
    assert [r["video_id"] for r in rows] == ["a", "b", "c", "d", "e", "f", "g"]
    assert rows[4]["path"] == str(data / "../e.mp4")


def test_manifest_structure_errors(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("video_id\tsplit\nx\ttrain\n")
    with pytest.raises(UserError, match="column.*path"):
        read_manifest_rows(manifest)
    write_manifest(
        manifest, [["a", "a.mp4", "train", *[0.5] * 5], ["a", "b.mp4", "train", *[0.5] * 5]]
    )
    with pytest.raises(UserError, match="appears twice"):
        read_manifest_rows(manifest)


def test_manifest_group_column_is_optional(tmp_path, caplog):
    manifest = tmp_path / "m.tsv"
    rows = [["a", "a.mp4", "train", *[0.5] * 5], ["b", "b.mp4", "test", *[0.5] * 5]]
    write_manifest(manifest, rows)
    labels = labels_from_manifest_rows(read_manifest_rows(manifest), str(manifest))
    assert {v: lab.group for v, lab in labels.items()} == {"a": None, "b": None}
    result = build_manifest([("a", "a.mp4", "s0"), ("b", "b.mp4", "s0")], labels)
    assert [r["group"] for r in result.rows] == ["a", "b"]  # each video its own group
    assert result.own_groups == ["a", "b"]

    write_manifest(manifest, [[*r, "person 1"] for r in rows], extra=["group"])
    labels = labels_from_manifest_rows(read_manifest_rows(manifest), str(manifest))
    result = build_manifest([("a", "a.mp4", "s0"), ("b", "b.mp4", "s0")], labels)
    assert [r["group"] for r in result.rows] == ["person 1", "person 1"]
    assert result.own_groups == []


def test_manifest_empty_group_cell_names_file_row_and_column(tmp_path):
    manifest = tmp_path / "m.tsv"
    write_manifest(
        manifest,
        [["a", "a.mp4", "train", *[0.5] * 5, "p1"], ["b", "b.mp4", "test", *[0.5] * 5, " "]],
        extra=["group"],
    )
    with pytest.raises(UserError) as err:
        labels_from_manifest_rows(read_manifest_rows(manifest), str(manifest))
    assert str(err.value).startswith(f"{manifest}: 1 bad row(s)")
    assert "line 3: column 'group' is empty" in str(err.value)


def test_rule_logs_the_videos_without_a_group_once(tmp_path, caplog):
    videos = []
    rows = []
    for i in range(3):
        (tmp_path / f"v{i}.mp4").write_bytes(b"x")
        videos.append((f"v{i}", str(tmp_path / f"v{i}.mp4"), "s0"))
        rows.append([f"v{i}", f"v{i}.mp4", "train", *[0.5] * 5])
    write_manifest(tmp_path / "m.tsv", rows)
    job = SimpleNamespace(
        input=SimpleNamespace(manifest=str(tmp_path / "m.tsv")),
        output=SimpleNamespace(
            manifest=str(tmp_path / "manifest.tsv"), unmatched=str(tmp_path / "ingest.tsv")
        ),
        params=SimpleNamespace(
            format="manifest", videos=videos, on_unmatched="warn", paths_outside=False
        ),
    )
    with caplog.at_level(logging.INFO, logger="traitlens.build_manifest"):
        build_manifest_rule(job)
    own = [r.getMessage() for r in caplog.records if "their own group" in r.getMessage()]
    assert len(own) == 1
    assert own[0].startswith("3 video(s) are their own group") and "'v0'" in own[0]
    assert "m.tsv has no 'group' column" in own[0]
    assert read_groups(tmp_path / "manifest.tsv") == {"v0": "v0", "v1": "v1", "v2": "v2"}
    assert any("train 3 in 3 groups" in r.getMessage() for r in caplog.records)
