"""Probing real mp4 files: the mp4 sample-table reader, ffprobe, and unreadable files."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from traitlens.extract.probe import ProbeError, ffprobe_video, probe_mp4, probe_video

from support.media import make_clip, set_rotation, truncate_half


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    made = {
        "bframes": make_clip(d / "bframes.mp4", n_frames=60, gop=30),
        "no_bframes": make_clip(d / "no_bframes.mp4", n_frames=45, gop=15, bframes=0),
        "no_editlist": make_clip(d / "no_editlist.mp4", extra=("-use_editlist", "0")),
        "faststart": make_clip(d / "faststart.mp4", faststart=True),
        "no_audio": make_clip(d / "no_audio.mp4", tone_hz=None),
    }
    made["rotated"] = make_clip(d / "rotated.mp4")
    set_rotation(made["rotated"], 90)
    return made


@pytest.mark.media
def test_probe_reads_the_frame_table(clips):
    probe = probe_video(clips["bframes"])
    assert probe.source == "mp4"
    assert probe.n_frames == 60
    assert probe.fps == pytest.approx(30.0)
    assert probe.duration_s == pytest.approx(2.0, abs=0.05)
    assert (probe.width, probe.height) == (320, 180) == probe.display_size
    assert probe.rotation == 0
    assert probe.has_audio and probe.audio_stream is not None
    np.testing.assert_allclose(probe.frame_pts, np.arange(60) / 30.0, atol=1e-6)
    assert list(np.flatnonzero(probe.keyframe)) == [0, 30]
    # x264's B-frames: some frames are not references; keyframes always are.
    assert probe.reference is not None
    assert probe.reference[probe.keyframe].all() and not probe.reference.all()


@pytest.mark.media
@pytest.mark.parametrize("name", ["bframes", "no_bframes", "no_editlist", "faststart", "rotated"])
def test_mp4_reader_agrees_with_ffprobe(clips, name):
    fast, slow = probe_mp4(clips[name]), ffprobe_video(clips[name])
    assert fast is not None and slow.source == "ffprobe"
    np.testing.assert_allclose(fast.frame_pts, slow.frame_pts, atol=2e-6)  # ffprobe prints 6 dp
    np.testing.assert_array_equal(fast.keyframe, slow.keyframe)
    for field in ("width", "height", "rotation", "has_audio", "video_stream", "audio_stream"):
        assert getattr(fast, field) == getattr(slow, field), field
    assert fast.display_size == slow.display_size
    assert fast.duration_s == pytest.approx(slow.duration_s, abs=1e-3)
    assert fast.fps == pytest.approx(slow.fps, rel=1e-4)


@pytest.mark.media
def test_without_bframes_every_frame_is_a_reference(clips):
    probe = probe_video(clips["no_bframes"])
    assert probe.reference.all()
    assert list(np.flatnonzero(probe.keyframe)) == [0, 15, 30]


@pytest.mark.media
def test_without_edit_list_timestamps_start_late(clips):
    # x264 with B-frames and no edit list: ffmpeg's first pts is the composition offset.
    probe = probe_video(clips["no_editlist"])
    assert probe.frame_pts[0] > 0
    np.testing.assert_allclose(
        probe.frame_pts, ffprobe_video(clips["no_editlist"]).frame_pts, atol=2e-6
    )


@pytest.mark.media
def test_rotation_swaps_the_displayed_size(clips):
    probe = probe_video(clips["rotated"])
    assert abs(probe.rotation) == 90
    assert (probe.width, probe.height) == (320, 180)
    assert probe.display_size == (180, 320)


@pytest.mark.media
def test_no_audio_stream(clips):
    for probe in (probe_video(clips["no_audio"]), ffprobe_video(clips["no_audio"])):
        assert not probe.has_audio and probe.audio_stream is None


@pytest.mark.media
@pytest.mark.parametrize("name", ["--Ymqszjv54.001.mp4", "-i.mp4", "ünï cödé vidéo.mp4", "a:b.mp4"])
def test_awkward_file_names(clips, tmp_path, name):
    path = tmp_path / name
    shutil.copy(clips["bframes"], path)
    assert probe_video(path).n_frames == 60
    assert ffprobe_video(path).n_frames == 60


def assert_one_line(reason: str):
    assert reason and "\n" not in reason and len(reason) <= 240


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(ProbeError) as err:
        probe_video(path)
    assert_one_line(err.value.reason)
    assert str(tmp_path) not in err.value.reason  # the id is in QC; no long paths
    assert err.value.reason.startswith("empty file (0 bytes)")


@pytest.mark.media
def test_truncated_file_without_index(clips, tmp_path):
    # ffmpeg writes the index (moov) last: half a file has none.
    path = truncate_half(clips["bframes"], tmp_path / "half.mp4")
    with pytest.raises(ProbeError, match="moov atom not found") as err:
        probe_video(path)
    assert_one_line(err.value.reason)
    assert err.value.reason.startswith("truncated or not an mp4: no index (moov) box")


@pytest.mark.media
def test_truncated_file_with_index_up_front(clips, tmp_path):
    path = truncate_half(clips["faststart"], tmp_path / "half.mp4")
    assert probe_mp4(path) is None  # its samples point past the end: left to ffprobe
    with pytest.raises(ProbeError, match="truncated: .* of 60 video frames") as err:
        probe_video(path)
    assert_one_line(err.value.reason)


@pytest.mark.media
def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all\n")
    with pytest.raises(ProbeError) as err:
        probe_video(path)
    assert_one_line(err.value.reason)


@pytest.mark.media
def test_audio_only_file(tmp_path):
    path = tmp_path / "tone.m4a"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=0.5",
            "-c:a",
            "aac",
            str(path),
        ],
        check=True,
    )
    with pytest.raises(ProbeError, match="no video stream"):
        probe_video(path)


@pytest.mark.media
def test_missing_file(tmp_path):
    with pytest.raises(ProbeError, match="No such file"):
        probe_video(tmp_path / "gone.mp4")


@pytest.mark.media
def test_mp4_reader_never_crashes_on_a_damaged_index(clips, tmp_path):
    # The reader is a shortcut: on a damaged moov it answers None (ffprobe decides).
    data = clips["faststart"].read_bytes()
    moov = data.find(b"moov")
    rng = np.random.default_rng(0)
    path = tmp_path / "damaged.mp4"
    for _ in range(200):
        damaged = bytearray(data)
        for pos in rng.integers(moov, moov + 2000, size=4):
            damaged[pos] = rng.integers(0, 256)
        path.write_bytes(bytes(damaged))
        probe = probe_mp4(path)
        assert probe is None or probe.n_frames > 0
