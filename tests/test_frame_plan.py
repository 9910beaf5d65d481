"""The frame choice and the decode planner (pure functions, no ffmpeg)."""

from __future__ import annotations

import numpy as np
import pytest

from traitlens.extract.frame_plan import (
    CostModel,
    evenly_spaced_indices,
    plan_frames,
    sequential_plan,
)


def keyframes(n_frames: int, gop: int) -> np.ndarray:
    mask = np.zeros(n_frames, dtype=bool)
    mask[::gop] = True
    return mask


def test_paper_indices():
    # The authors' MATLAB code takes frames 1, 47, 93, ..., 415 of a 461-frame video.
    assert [i + 1 for i in evenly_spaced_indices(461, 10)] == list(range(1, 416, 46))


@pytest.mark.parametrize("n_frames", [1, 2, 9, 10, 11, 99, 100, 101, 450, 459, 4500])
@pytest.mark.parametrize("n", [1, 10, 100])
def test_evenly_spaced_indices_valid(n_frames, n):
    indices = evenly_spaced_indices(n_frames, n)
    assert len(indices) == min(n, n_frames)
    assert indices == sorted(set(indices))
    assert indices[0] == 0 and indices[-1] < n_frames


def test_fewer_frames_than_wanted_gives_all_frames():
    assert evenly_spaced_indices(7, 10) == list(range(7))
    assert evenly_spaced_indices(0, 10) == []
    assert evenly_spaced_indices(10, 0) == []


def test_sparse_frames_in_short_gops_seek_to_each_gop():
    plan = plan_frames(keyframes(450, 30), [5, 100, 200, 400], megapixels=1.0)
    assert plan.method == "seek"
    segments = [seg for job in plan.jobs for seg in job]
    assert [(s.start, s.wanted) for s in segments] == [
        (0, (5,)),
        (90, (100,)),
        (180, (200,)),
        (390, (400,)),
    ]
    assert plan.decoded_frames == 6 + 11 + 21 + 11
    assert plan.frames == [5, 100, 200, 400]
    full = sequential_plan(450, [5, 100, 200, 400], megapixels=1.0)
    assert plan.estimated_s < full.estimated_s


def test_one_long_gop_decodes_sequentially():
    plan = plan_frames(keyframes(450, 1000), evenly_spaced_indices(450, 10), megapixels=1.0)
    assert plan.method == "sequential"
    assert [[(s.start, s.decoded) for s in job] for job in plan.jobs] == [[(0, 405)]]


def test_dense_frames_merge_into_one_pass():
    wanted = evenly_spaced_indices(450, 100)
    plan = plan_frames(keyframes(450, 30), wanted, megapixels=1.0)
    assert plan.frames == wanted
    assert len(plan.jobs) == 1 and len(plan.jobs[0]) == 1
    assert plan.jobs[0][0].start == 0


def test_small_frames_make_seeks_relatively_dear():
    # At 384x216 a frame decodes ~11x faster than at 720p; a seek's fixed cost is not.
    wanted = [20, 50, 80, 110]
    assert plan_frames(keyframes(150, 30), wanted, megapixels=0.08).method == "sequential"
    assert plan_frames(keyframes(150, 30), wanted, megapixels=2.0).method == "seek"


def test_workers_split_gops_into_balanced_contiguous_jobs():
    wanted = evenly_spaced_indices(450, 10)
    plan = plan_frames(keyframes(450, 30), wanted, megapixels=1.0, workers=2)
    assert len(plan.jobs) == 2 and plan.decode_threads == 1
    assert plan.frames == wanted  # job order = output order
    costs = [sum(s.decoded for s in job) for job in plan.jobs]
    assert max(costs) - min(costs) <= 30


def test_a_single_gop_uses_decode_threads_instead():
    plan = plan_frames(keyframes(450, 1000), [10, 300], megapixels=1.0, workers=2)
    assert len(plan.jobs) == 1 and plan.decode_threads == 2


def test_nonreference_frames_skipped_only_when_all_wanted_are_references():
    reference = np.ones(90, dtype=bool)
    reference[1::2] = False  # every odd frame is a non-reference B frame
    plan = plan_frames(keyframes(90, 30), [20, 51, 80], megapixels=1.0, reference=reference)
    segments = {s.wanted: s for job in plan.jobs for s in job}
    assert segments[(20,)].skip_nonref and segments[(20,)].decoded == 11  # 0, 2, ..., 20
    assert not segments[(51,)].skip_nonref and segments[(51,)].decoded == 22
    assert segments[(80,)].skip_nonref and segments[(80,)].decoded == 11


def test_frame_zero_is_always_a_start_even_without_a_keyframe_flag():
    mask = np.zeros(100, dtype=bool)
    mask[50] = True
    plan = plan_frames(mask, [10, 60], megapixels=5.0)
    assert {s.start for job in plan.jobs for s in job} <= {0, 50}


def test_cost_model_is_a_parameter():
    cheap_seeks = CostModel(seek_s=0.0, seek_frames=0.0, process_s=0.0)
    plan = plan_frames(keyframes(60, 10), [5, 15], megapixels=0.01, cost=cheap_seeks)
    assert plan.method == "seek"


def test_bad_indices_and_empty_requests():
    with pytest.raises(ValueError, match="frame indices"):
        plan_frames(keyframes(10, 5), [10], megapixels=1.0)
    with pytest.raises(ValueError, match="frame indices"):
        plan_frames(keyframes(10, 5), [-1], megapixels=1.0)
    with pytest.raises(ValueError, match="length"):
        plan_frames(keyframes(10, 5), [1], megapixels=1.0, reference=[True])
    empty = plan_frames(keyframes(10, 5), [], megapixels=1.0)
    assert empty.jobs == () and empty.frames == []
