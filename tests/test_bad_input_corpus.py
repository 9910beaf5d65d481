"""The bad-input corpus (tests/support/bad_inputs.py) through the real workflow.

One run over good and bad videos together (First Impressions layout, up to faces and
AUs): every bad video is excluded with its reason in the QC tables or flagged, and
nothing else is lost. Then the inputs that must stop the run, each a quick run of its
own: the run fails, the message names the file and the problem, and no traceback
reaches the user.
"""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from traitlens.core.h5checks import as_str
from traitlens.extract.frame_decode import content_box
from traitlens.extract.frame_plan import evenly_spaced_indices
from traitlens.faces.face_landmarks import region_landmarks
from traitlens.ingest.sharding import assign_shards

from support import bad_inputs as bi
from support.media import read_index
from support.workflow import run_snakemake, write_config
from support.workflow_config import fi_config, fi_layout

pytestmark = pytest.mark.workflow

NAME = "bad"
SPLITS = {
    "training": [
        "astronaut.001",
        bi.ODD_NAME,
        "two_faces.001",
        "face_leaves.001",
        "large_1920x1080.001",
        "rotated_90.001",
        "variable_fps.001",
        "ten_minutes.001",
        "truncated.001",
        "zero_byte.001",
    ],
    "validation": ["no_audio.001", "one_second.001", "tiny_64x48.001", "missing_file.001"],
    "test": ["no_face.001", "audio_only.001"],
}
EXTRA = "unlabelled.001"  # a video file nobody labelled
MISSING = "missing_file.001"  # a label whose video file does not exist
N_SHARDS = 2
FRAMES = 10  # extract.frames_per_video
BOX = (384, 216)  # extract.frame_width, frame_height


def _targets(shards):
    return [
        f"results/{NAME}/manifest.tsv",
        f"results/{NAME}/qc/videos.tsv",
        *[f"results/{NAME}/aus/{s}.tsv" for s in shards],
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    videos = root / "videos"
    for split, ids in SPLITS.items():
        on_disk = [v for v in ids if v in bi.VIDEO_IDS]
        bi.write_videos(videos / f"{split}-1" / f"{split}80_01", on_disk)
    bi.numbered_video(videos / "training-1" / f"{EXTRA}.mp4", 20, 10)
    loop = bi.symlink_loop(videos / "test-1")
    bi.write_label_pickles(root, SPLITS)
    config = fi_config(root, max_failed_fraction=0.3)  # 3 of 16 unreadable on purpose
    config["dataset"]["name"] = NAME
    config["sharding"]["n_shards"] = N_SHARDS
    configfile = write_config(root / "bad.yaml", config)
    shards = sorted(assign_shards([*bi.VIDEO_IDS, EXTRA], N_SHARDS))
    result = run_snakemake(root, configfile, *_targets(shards))
    return {
        "root": root,
        "results": root / "results" / NAME,
        "configfile": configfile,
        "shards": shards,
        "loop": loop,
        "result": result,
    }


def _qc(corpus):
    qc = pd.read_csv(
        corpus["results"] / "qc/videos.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    return qc.set_index("video_id")


def _face_qc(corpus):
    tables = [
        pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False)
        for p in sorted((corpus["results"] / "qc/faces").glob("*.tsv"))
    ]
    return pd.concat(tables).set_index("video_id")


def _per_video(corpus, kind):
    """{video_id: {dataset: that video's rows}} over the shards' frames or faces files."""
    out = {}
    for shard in corpus["shards"]:
        with h5py.File(corpus["results"] / kind / f"{shard}.h5") as h5:
            ids = [as_str(v) for v in h5["video_id"][:]]
            video_index = h5["video_index"][:]
            names = [n for n in h5 if h5[n].shape[:1] == video_index.shape]
            for j, video_id in enumerate(ids):
                rows = np.flatnonzero(video_index == j)
                out[video_id] = {n: h5[n][rows[0] : rows[-1] + 1] for n in names}
                if "content_box" in h5:
                    out[video_id]["content_box"] = tuple(h5["content_box"][j])
    return out


def _aus(corpus, suffix):
    tables = [
        pd.read_csv(corpus["results"] / "aus" / f"{s}{suffix}", sep="\t", dtype={"video_id": str})
        for s in corpus["shards"]
    ]
    return pd.concat(tables)


def _decoded(frames):
    """The frame numbers the extracted pictures of a numbered video show."""
    box = frames["content_box"]
    return [read_index(p, box) for p in frames["frames"]]


# --- the run over good and bad videos together ---------------------------------------------


def test_run_completes_without_a_traceback(corpus):
    result = corpus["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr


def test_unreadable_videos_are_excluded_with_their_reason(corpus):
    qc = _qc(corpus)
    expected = {
        "zero_byte.001": "empty file (0 bytes)",
        "truncated.001": "truncated or not an mp4: no index (moov) box",
        "audio_only.001": "no video stream",
    }
    for video_id, reason in expected.items():
        assert qc.loc[video_id, "status"] == "failed"
        assert qc.loc[video_id, "reason"].startswith(reason), qc.loc[video_id, "reason"]
        assert qc.loc[video_id, "n_frames"] == "0"
    # they stay labelled in the manifest but have no rows downstream
    manifest = pd.read_csv(corpus["results"] / "manifest.tsv", sep="\t")
    assert set(expected) <= set(manifest["video_id"])
    assert not set(expected) & set(_per_video(corpus, "frames"))
    assert not set(expected) & set(_aus(corpus, ".tsv")["video_id"])
    # and the QC job's log (shown to the user) lists each with its reason
    log = (corpus["results"] / "logs/summarise_qc.log").read_text()
    for video_id, reason in expected.items():
        assert f"failed: {video_id}: {reason}" in log
    assert "13 of 16 videos extracted, 3 failed" in log


def test_extra_and_missing_videos_are_left_out_and_listed(corpus):
    manifest = pd.read_csv(corpus["results"] / "manifest.tsv", sep="\t")
    assert EXTRA not in set(manifest["video_id"]) and MISSING not in set(manifest["video_id"])
    ingest = pd.read_csv(corpus["results"] / "qc/ingest.tsv", sep="\t").set_index("video_id")
    assert ingest.loc[EXTRA, "problem"] == "video file has no label"
    assert ingest.loc[MISSING, "problem"].endswith("but no readable video file found")
    assert "annotation_validation.pkl" in ingest.loc[MISSING, "problem"]
    assert len(ingest) == 2
    # the ingest job's warning (shown to the user) names both and where they are listed
    log = (corpus["results"] / "logs/build_manifest.log").read_text()
    assert "2 video(s) left out of the manifest (all listed in" in log
    assert f"{EXTRA}: video file has no label" in log and f"{MISSING}: labelled in" in log


def test_symlink_loop_in_the_videos_folder_is_not_followed(corpus):
    assert corpus["loop"].is_symlink()
    manifest = pd.read_csv(corpus["results"] / "manifest.tsv", sep="\t")
    labelled = [v for ids in SPLITS.values() for v in ids if v != MISSING]
    assert sorted(manifest["video_id"]) == sorted(labelled)  # each once, none via the loop
    assert all("/loop/" not in p for p in manifest["path"])


def test_nothing_else_is_lost(corpus):
    """Every readable video has its frames, a faces row per frame and an AU row per frame."""
    readable = sorted({*bi.VIDEO_IDS, EXTRA} - set(bi.UNREADABLE))
    qc = _qc(corpus)
    assert sorted(qc.index[qc["status"] == "ok"]) == readable
    frames, faces = _per_video(corpus, "frames"), _per_video(corpus, "faces")
    assert sorted(frames) == sorted(faces) == readable
    au_frames = _aus(corpus, ".tsv")
    for video_id in readable:
        assert qc.loc[video_id, "n_frames"] == str(FRAMES)
        assert frames[video_id]["frames"].shape == (FRAMES, BOX[1], BOX[0], 3)
        assert list(faces[video_id]["frame_index"]) == list(frames[video_id]["frame_index"])
        rows = au_frames[au_frames["video_id"] == video_id]
        assert list(rows["frame_index"]) == list(frames[video_id]["frame_index"])


def test_faces_and_aus_of_the_good_videos_are_complete(corpus):
    qc, face_qc = _qc(corpus), _face_qc(corpus)
    au_videos = _aus(corpus, ".videos.tsv").set_index("video_id")
    au_columns = [c for c in au_videos.columns if c.startswith("AU")]
    for video_id in bi.FACE_EVERY_FRAME:
        assert qc.loc[video_id, "n_faces"] == str(FRAMES), video_id
        assert face_qc.loc[video_id, "reason"] == "", video_id
        assert au_videos.loc[video_id, "n_frames"] == FRAMES, video_id
        assert np.isfinite(au_videos.loc[video_id, au_columns].astype(float)).all(), video_id


def test_file_name_with_spaces_and_non_ascii_characters(corpus):
    manifest = pd.read_csv(corpus["results"] / "manifest.tsv", sep="\t").set_index("video_id")
    assert manifest.loc[bi.ODD_NAME, "path"].endswith("/été clip ñ.001.mp4")
    assert _qc(corpus).loc[bi.ODD_NAME, "status"] == "ok"
    faces = _per_video(corpus, "faces")[bi.ODD_NAME]
    assert faces["success"].all()


def test_video_without_audio_keeps_its_frames_and_faces(corpus):
    qc = _qc(corpus)
    assert qc.loc["no_audio.001", "has_audio"] == "false"
    assert qc.loc["astronaut.001", "has_audio"] == "true"
    shard = next(s for s, ids in assign_shards(["no_audio.001"], N_SHARDS).items())
    with h5py.File(corpus["results"] / "audio" / f"{shard}.h5") as h5:
        ids = [as_str(v) for v in h5["video_id"][:]]
        j = ids.index("no_audio.001")
        assert not h5["has_audio"][j] and h5["offsets"][j] == h5["offsets"][j + 1]
    assert qc.loc["no_audio.001", "n_faces"] == str(FRAMES)


def test_rotated_video_comes_out_upright(corpus):
    qc = _qc(corpus)
    # stored 320x240 sideways; displayed (and recorded) portrait
    assert (qc.loc["rotated_90.001", "width"], qc.loc["rotated_90.001", "height"]) == (
        "240",
        "320",
    )
    frames = _per_video(corpus, "frames")["rotated_90.001"]
    assert frames["content_box"] == content_box((240, 320), BOX)
    faces = _per_video(corpus, "faces")["rotated_90.001"]
    assert faces["success"].all()
    regions = region_landmarks()
    for lms in faces["landmarks"]:  # an upright face: brows above eyes above mouth
        height = {r: lms[list(regions[r]), 1].mean() for r in ("eyebrows", "eyes", "mouth")}
        assert height["eyebrows"] < height["eyes"] < height["mouth"]


def test_ten_minute_video_is_sampled_across_its_length(corpus):
    qc = _qc(corpus).loc["ten_minutes.001"]
    assert float(qc["duration_s"]) == pytest.approx(600) and float(qc["fps"]) == pytest.approx(2)
    frames = _per_video(corpus, "frames")["ten_minutes.001"]
    wanted = evenly_spaced_indices(1200, FRAMES)
    assert list(frames["frame_index"]) == wanted
    np.testing.assert_allclose(frames["timestamp_s"], np.array(wanted) / 2, atol=1e-3)
    assert frames["timestamp_s"][-1] > 0.85 * 600  # the last tenth starts at 540 s
    assert _decoded(frames) == wanted  # the pixels are those frames'


def test_variable_frame_rate_video(corpus):
    frames = _per_video(corpus, "frames")["variable_fps.001"]
    n = bi.VFR_FAST + bi.VFR_SLOW
    wanted = evenly_spaced_indices(n, FRAMES)
    assert list(frames["frame_index"]) == wanted
    np.testing.assert_allclose(frames["timestamp_s"], bi.vfr_timestamps()[wanted], atol=1e-3)
    assert _decoded(frames) == wanted
    # QC reports the average rate: 49 frame intervals over 2.9 s
    assert float(_qc(corpus).loc["variable_fps.001", "fps"]) == pytest.approx(49 / 2.9, rel=1e-4)


def test_one_second_video(corpus):
    qc = _qc(corpus).loc["one_second.001"]
    assert float(qc["duration_s"]) == pytest.approx(1.0)
    frames = _per_video(corpus, "frames")["one_second.001"]
    assert _decoded(frames) == list(frames["frame_index"]) == evenly_spaced_indices(30, FRAMES)


def test_tiny_and_large_resolutions(corpus):
    qc = _qc(corpus)
    assert (qc.loc["tiny_64x48.001", "width"], qc.loc["tiny_64x48.001", "height"]) == ("64", "48")
    tiny = _per_video(corpus, "frames")["tiny_64x48.001"]
    assert tiny["content_box"] == content_box((64, 48), BOX)  # scaled up into the box
    assert _decoded(tiny) == evenly_spaced_indices(30, FRAMES)
    large = qc.loc["large_1920x1080.001"]
    assert (large["width"], large["height"], large["status"]) == ("1920", "1080", "ok")
    frames = _per_video(corpus, "frames")["large_1920x1080.001"]
    assert frames["content_box"] == (0, 0, *BOX)  # 16:9 fills the 384x216 box
    assert large["n_faces"] == str(FRAMES)


def test_video_without_a_face_is_flagged_not_failed(corpus):
    qc, face_qc = _qc(corpus), _face_qc(corpus)
    assert qc.loc["no_face.001", "status"] == "ok" and qc.loc["no_face.001", "n_faces"] == "0"
    assert face_qc.loc["no_face.001", "reason"] == f"no face: {FRAMES}"
    au_videos = _aus(corpus, ".videos.tsv").set_index("video_id")
    assert au_videos.loc["no_face.001", "n_frames"] == 0
    au_frames = _aus(corpus, ".tsv")
    assert not au_frames.loc[au_frames["video_id"] == "no_face.001", "success"].any()


def test_two_faces_keep_one_the_same_in_every_frame(corpus):
    assert _face_qc(corpus).loc["two_faces.001", "multiple_faces_seen"] == "true"
    faces = _per_video(corpus, "faces")["two_faces.001"]
    assert faces["success"].all() and (faces["n_faces_seen"] == 2).all()
    centre_x = (faces["box"][:, 0] + faces["box"][:, 2]) / 2
    # the larger face: the astronaut's, on the left (Grace Hopper's, right of x = 280, is
    # 2/3 its width); mediapipe draws both boxes ~2 px apart between frames
    assert (centre_x < 0.5 * BOX[0]).all()
    assert np.ptp(centre_x) < 3  # the same face every frame


def test_face_leaving_half_way_keeps_the_frames_with_a_face(corpus):
    faces = _per_video(corpus, "faces")["face_leaves.001"]
    stamps = _per_video(corpus, "frames")["face_leaves.001"]["timestamp_s"]
    t = stamps / 2.9  # fraction of the video (30 frames at 10 fps: last frame at 2.9 s)
    reasons = [as_str(r) for r in faces["reason"]]
    assert (t <= 0.5).sum() == 6 and faces["success"][t <= 0.5].all()  # the still first half
    gone = [r for r, tt in zip(reasons, t, strict=True) if tt >= 0.75]  # out of the picture
    assert gone == ["no face", "no face"]
    n_faces = int(faces["success"].sum())
    assert 6 <= n_faces <= 8
    assert _qc(corpus).loc["face_leaves.001", "n_faces"] == str(n_faces)
    assert _face_qc(corpus).loc["face_leaves.001", "reason"] == f"no face: {FRAMES - n_faces}"
    au_frames = _aus(corpus, ".tsv")
    rows = au_frames[au_frames["video_id"] == "face_leaves.001"]
    assert list(rows["success"]) == list(faces["success"])
    au_videos = _aus(corpus, ".videos.tsv").set_index("video_id")
    assert au_videos.loc["face_leaves.001", "n_frames"] == n_faces


# --- inputs that stop the run ----------------------------------------------------------------


def _assert_clean_stop(result, *expected):
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output[-3000:]}"
    assert "Traceback" not in output


BAD_LABELS = {
    "missing_trait_key": (
        lambda path, marker: bi.label_pickle_missing_trait(path, ["c.001"], "neuroticism"),
        ["trait key(s) missing: neuroticism", "all five traits"],
    ),
    "nan": (
        lambda path, marker: bi.label_pickle_with_values(
            path, ["c.001"], {("c.001", "openness"): np.float64("nan")}
        ),
        ["openness of 'c.001.mp4' is nan: labels must be numbers in [0, 1]"],
    ),
    "out_of_range": (
        lambda path, marker: bi.label_pickle_with_values(
            path, ["c.001"], {("c.001", "extraversion"): np.float64(1.7)}
        ),
        ["extraversion of 'c.001.mp4' is 1.7: labels must be numbers in [0, 1]"],
    ),
    "string": (
        lambda path, marker: bi.label_pickle_with_values(
            path, ["c.001"], {("c.001", "agreeableness"): "high"}
        ),
        ["agreeableness of 'c.001.mp4' is 'high': labels must be numbers in [0, 1]"],
    ),
    "code_running_pickle": (
        lambda path, marker: bi.label_pickle_running_code(path, marker),
        ["refused to load as an annotation pickle", "os.system", "was not executed"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_label_file_stops_the_run_with_a_clear_message(tmp_path, case):
    write_bad, expected = BAD_LABELS[case]
    ids = {"training": ["a.001", "b.001"], "validation": ["c.001"], "test": ["d.001"]}
    fi_layout(tmp_path, ids)  # placeholder video files: ingest only checks they exist
    marker = tmp_path / "pwned"
    bad = write_bad(tmp_path / "annotation_validation.pkl", marker)
    configfile = write_config(tmp_path / "c.yaml", fi_config(tmp_path))
    result = run_snakemake(tmp_path, configfile, "results/fi/manifest.tsv")
    _assert_clean_stop(result, f"{bad}: ", *expected)
    assert not (tmp_path / "results/fi/manifest.tsv").exists()
    assert not marker.exists()


def test_unmatched_videos_stop_the_run_when_asked(tmp_path):
    ids = {"training": ["a.001"], "validation": ["b.001"], "test": ["c.001"]}
    fi_layout(tmp_path, ids)
    (tmp_path / "videos" / "nolabel.001.mp4").write_bytes(b"placeholder")
    config = fi_config(tmp_path)
    config["ingest"]["on_unmatched"] = "error"
    result = run_snakemake(tmp_path, write_config(tmp_path / "c.yaml", config), "build_manifest")
    _assert_clean_stop(
        result,
        "1 video(s) have a label but no file, or a file but no label",
        "nolabel.001: video file has no label",
        "set ingest.on_unmatched: warn to leave them out and go on.",
    )
    # a failed job's outputs are deleted: the list lives on in the job's log
    log = (tmp_path / "results/fi/logs/build_manifest.log").read_text()
    assert "nolabel.001: video file has no label" in log
    assert not (tmp_path / "results/fi/manifest.tsv").exists()


def test_manifest_path_outside_the_data_folder_stops_at_start(tmp_path):
    data, other = tmp_path / "data", tmp_path / "elsewhere"
    bi.write_videos(data / "clips", ["astronaut.001"])
    bi.write_videos(other, ["no_face.001"])
    manifest = bi.write_manifest(
        data / "manifest.tsv",
        [
            ("inside", "clips/astronaut.001.mp4", "train"),
            ("up_and_out", "../elsewhere/no_face.001.mp4", "train"),
            ("absolute", str(other / "no_face.001.mp4"), "test"),
        ],
    )
    config = fi_config(tmp_path)
    config["dataset"] = {"name": "mine", "format": "manifest", "manifest": str(manifest)}
    result = run_snakemake(tmp_path, write_config(tmp_path / "m.yaml", config), "-n")
    _assert_clean_stop(
        result,
        f"{manifest}: 2 row(s) name a video outside the manifest's folder {data}",
        "line 3: up_and_out: ../elsewhere/no_face.001.mp4",
        f"line 4: absolute: {other / 'no_face.001.mp4'}",
        "Put the manifest in the folder that holds the videos",
    )
    assert "line 2: inside" not in result.stdout + result.stderr


def test_weights_file_that_is_a_pickle_of_something_else_stops_the_run_at_start(corpus):
    root = corpus["root"]
    config = yaml.safe_load(corpus["configfile"].read_text())
    weights = bi.weights_pickle_of_something_else(root / "vgg_face.pt")
    config["models"]["visual"]["weights"] = str(weights)
    configfile = write_config(root / "weights.yaml", config)
    result = run_snakemake(root, configfile, f"results/{NAME}/models/img/weights.pt")
    _assert_clean_stop(
        result,
        f"{weights}: not a weights file this workflow can read",
        "it is a plain Python pickle (pickle.dump), not a torch.save file; it was not loaded",
    )
    # the start check refused it: no job ran, and no weights were written
    assert "extract_shard" not in result.stderr and "detect_faces" not in result.stderr
    assert "rule train_visual" not in result.stderr
    assert not (corpus["results"] / "models/img/weights.pt").exists()
