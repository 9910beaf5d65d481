"""Frame extraction from real H.264 files whose pixels spell their own frame number."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from traitlens.extract.frame_decode import FrameExtractionError, content_box, extract_frames
from traitlens.extract.frame_plan import evenly_spaced_indices, plan_frames, sequential_plan
from traitlens.extract.probe import VideoReadError, ffprobe_video, probe_video

from support.media import make_clip, read_index, set_rotation

BOX = (96, 72)  # 4:3 box: a 16:9 clip gets black bars above and below


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    return {
        "gop30": make_clip(d / "gop30.mp4", n_frames=150, gop=30),
        "gop250": make_clip(d / "gop250.mp4", n_frames=300, gop=250, size=(160, 96)),
    }


def seek_plan(probe, wanted, workers):
    # A huge frame size makes decoding dear and seeks cheap: the planner seeks.
    plan = plan_frames(probe.keyframe, wanted, 1000.0, workers, probe.reference)
    assert plan.method == "seek"
    return plan


def decoded(result):
    return [read_index(frame, result.content_box) for frame in result.pixels]


def test_content_box_keeps_aspect_and_centres():
    assert content_box((1280, 720), (384, 216)) == (0, 0, 384, 216)
    assert content_box((320, 180), (96, 72)) == (0, 9, 96, 54)
    assert content_box((180, 320), (384, 216)) == (131, 0, 122, 216)
    assert content_box((640, 480), (384, 216)) == (48, 0, 288, 216)
    with pytest.raises(ValueError):
        content_box((0, 10), (10, 10))


WANTED = {
    "gop30": [0, 14, 29, 30, 44, 89, 100, 101, 149],
    "gop250": [0, 44, 120, 200, 250, 260, 299],
}


@pytest.mark.media
@pytest.mark.parametrize("clip", ["gop30", "gop250"])
@pytest.mark.parametrize("workers", [1, 2])
def test_both_methods_give_the_right_frames_pixel_for_pixel(clips, clip, workers):
    probe = probe_video(clips[clip])
    wanted = WANTED[clip]
    plain = extract_frames(probe, wanted, *BOX, plan=sequential_plan(probe.n_frames, wanted, 1))
    seeking = extract_frames(probe, wanted, *BOX, workers, plan=seek_plan(probe, wanted, workers))
    for result in (plain, seeking):
        assert result.pixels.shape == (len(wanted), BOX[1], BOX[0], 3)
        assert result.pixels.dtype == np.uint8
        assert decoded(result) == wanted
        assert list(result.frame_index) == wanted
        np.testing.assert_allclose(result.timestamp_s, np.array(wanted) / 30.0, atol=1e-6)
        assert result.content_box == content_box(probe.display_size, BOX)
    # Seeking and skipping non-reference frames change nothing in the pixels.
    np.testing.assert_array_equal(plain.pixels, seeking.pixels)


@pytest.mark.media
def test_seek_plan_skips_nonreference_frames_where_it_can(clips):
    probe = probe_video(clips["gop30"])
    # The last reference frame of each GOP: only the references before it are decoded.
    wanted = [max(i for i in range(g, g + 30) if probe.reference[i]) for g in (0, 60, 120)]
    plan = seek_plan(probe, wanted, 1)
    segments = [seg for job in plan.jobs for seg in job]
    assert all(seg.skip_nonref and seg.decoded < 25 for seg in segments)
    plain = extract_frames(probe, wanted, *BOX, plan=sequential_plan(probe.n_frames, wanted, 1))
    skipping = extract_frames(probe, wanted, *BOX, plan=plan)
    assert decoded(skipping) == wanted
    np.testing.assert_array_equal(plain.pixels, skipping.pixels)


@pytest.mark.media
def test_padding_is_black_and_picture_fills_the_box(clips):
    probe = probe_video(clips["gop30"])
    result = extract_frames(probe, [255 % 150], *BOX)
    x, y, w, h = result.content_box
    frame = result.pixels[0]
    assert frame[:y].max() == 0 and frame[y + h :].max() == 0
    assert frame[y : y + h, x : x + w].max() >= 250


@pytest.mark.media
def test_planner_default_with_evenly_spaced_frames(clips):
    for name, clip in clips.items():
        probe = probe_video(clip)
        wanted = evenly_spaced_indices(probe.n_frames, 10)
        for workers in (1, 2):
            assert decoded(extract_frames(probe, wanted, *BOX, workers)) == wanted, name


@pytest.mark.media
def test_ffprobe_timestamps_work_too(clips):
    # ffprobe prints 6 decimals; selection windows are half a frame wide.
    probe = ffprobe_video(clips["gop30"])
    wanted = WANTED["gop30"]
    assert decoded(extract_frames(probe, wanted, *BOX, plan=seek_plan(probe, wanted, 2))) == wanted


@pytest.mark.media
def test_every_frame(clips):
    probe = probe_video(clips["gop30"])
    wanted = list(range(probe.n_frames))  # 150 terms: a flat select sum would not parse
    assert decoded(extract_frames(probe, wanted, *BOX, 2)) == wanted


@pytest.mark.media
def test_rotated_video_comes_out_upright(clips, tmp_path):
    path = make_clip(tmp_path / "portrait.mp4", n_frames=40, gop=10)
    set_rotation(path, 90)
    probe = probe_video(path)
    result = extract_frames(probe, [3, 17, 33], *BOX)
    x, y, w, h = result.content_box
    assert h > w  # portrait picture inside the landscape box
    assert (x, y, w, h) == content_box((180, 320), BOX)
    # Displayed = stored frame turned 90 degrees clockwise; turn it back to read it.
    picture = result.pixels[:, y : y + h, x : x + w]
    assert [read_index(np.rot90(p, k=1)) for p in picture] == [3, 17, 33]


@pytest.mark.media
@pytest.mark.parametrize("name", ["--Ymqszjv54.001.mp4", "ünï cödé vidéo.mp4"])
def test_awkward_file_names(clips, tmp_path, name):
    path = tmp_path / name
    shutil.copy(clips["gop30"], path)
    probe = probe_video(path)
    assert decoded(extract_frames(probe, [3, 77], *BOX, plan=seek_plan(probe, [3, 77], 1))) == [
        3,
        77,
    ]


@pytest.mark.media
def test_a_seek_that_misses_falls_back_to_a_plain_decode(clips):
    probe = probe_video(clips["gop30"])
    # Pretend frame 15 is a keyframe: ffmpeg lands on frame 0 and the plan comes back short.
    fake = probe.keyframe.copy()
    fake[15] = True
    plan = plan_frames(fake, [20, 100], 1000.0, 1)
    assert plan.jobs[0][0].start == 15
    result = extract_frames(probe, [20, 100], *BOX, plan=plan)
    assert decoded(result) == [20, 100]
    assert result.plan.method == "sequential" and result.plan is not plan


@pytest.mark.media
def test_media_data_cut_after_probing(clips, tmp_path):
    path = tmp_path / "cut.mp4"
    shutil.copy(make_clip(tmp_path / "src.mp4", n_frames=90, faststart=True), path)
    probe = probe_video(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    plain = sequential_plan(probe.n_frames, [0, 45, 89], 1)
    with pytest.raises(FrameExtractionError, match="of 3 frames decoded") as err:
        extract_frames(probe, [0, 45, 89], *BOX, plan=plain)  # a plain plan is not retried
    assert "\n" not in err.value.reason
    with pytest.raises(VideoReadError) as err:  # frames come back short, then ffprobe
        extract_frames(probe, [0, 45, 89], *BOX)
    assert err.value.reason and "\n" not in err.value.reason


@pytest.mark.media
def test_no_frames_wanted(clips):
    result = extract_frames(probe_video(clips["gop30"]), [], *BOX)
    assert result.pixels.shape == (0, BOX[1], BOX[0], 3)
