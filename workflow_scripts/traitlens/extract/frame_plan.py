"""Which frames to take, and the cheapest way to decode them (pure functions).

An H.264 frame can only be decoded starting from the keyframe that opens its GOP, so
the least work that yields a frame is decoding from that keyframe up to it. For a few
frames spread over a clip with short GOPs, seeking to the keyframe of each GOP that
holds a wanted frame decodes a fraction of the clip; with long GOPs, or many wanted
frames, one pass from the start costs about the same and saves the seeks. When every
wanted frame of a segment is a reference frame, the frames nothing refers to can be
skipped on the way (``-skip_frame noref``: ~40% fewer frames decoded in x264 streams).

The planner prices the options with a small cost model (seconds; constants measured
with ffmpeg 5.1 on two cores, see ``CostModel``) and may split the work over parallel
ffmpeg processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def evenly_spaced_indices(n_frames: int, n: int) -> list[int]:
    """The first frame of each of ``n`` equal segments of a ``n_frames``-frame video.

    index_k = floor(k * (F - 1) / n) for k = 0..n-1 (0-based). For F = 461, n = 10 this
    gives 0, 46, 92, ..., 414: the paper's frames 1, 47, 93, ..., 415 in its 1-based
    MATLAB indexing. Never an index >= F; with F <= n every frame is returned once.
    """
    if n_frames <= 0 or n <= 0:
        return []
    if n_frames <= n:
        return list(range(n_frames))
    return [k * (n_frames - 1) // n for k in range(n)]


@dataclass(frozen=True)
class CostModel:
    """Wall-time model of one ffmpeg extraction, in seconds.

    Measured on this project's 2-core machine (ffmpeg 5.1; x264 1280x720 and 384x216
    clips): decoding takes 2-3 ms per megapixel per frame on one thread; scaling and
    converting a kept frame to rgb24 (area filter) ~0.9 ms per source megapixel; each
    extra input (open, seek, decoding the keyframe, several times larger than the
    average frame, and refilling the B-frame reorder delay) ~3 ms plus about six
    frames' decoding; ffmpeg start-up ~0.065 s. A second decode thread speeds a plain
    decode up 1.6x, but less end to end (selection and scaling stay on ffmpeg's main
    thread): 100 frames of a 250-frame-GOP clip took 1.09x a full decode with two
    threads, 0.95x as two single-threaded processes; two processes side by side each
    run ~1.2x slower than one alone.
    """

    decode_s_per_mpixel: float = 2.5e-3
    output_s_per_mpixel: float = 0.9e-3
    seek_s: float = 3e-3
    seek_frames: float = 6.0
    process_s: float = 0.065
    thread_gain: float = 0.45  # t decode threads run 1 + thread_gain * (t - 1) times faster
    process_slowdown: float = 0.2  # p processes side by side: each 1 + slowdown * (p - 1)


DEFAULT_COST = CostModel()


@dataclass(frozen=True)
class Segment:
    """Decode from frame ``start`` (a keyframe, or 0) up to ``wanted[-1]`` and keep the
    ``wanted`` frames; ``skip_nonref``: skip frames no other frame refers to (only when
    all wanted frames are reference frames). ``decoded``: frames the decoder works on."""

    start: int
    wanted: tuple[int, ...]
    skip_nonref: bool
    decoded: int


@dataclass(frozen=True)
class FramePlan:
    """How to extract frames: ``jobs`` run as parallel ffmpeg processes, each decoding
    its segments in order with ``decode_threads`` threads; output order = job order."""

    method: str  # "sequential": one pass from the first frame; "seek": starts at keyframes
    jobs: tuple[tuple[Segment, ...], ...]
    decode_threads: int
    estimated_s: float

    @property
    def frames(self) -> list[int]:
        return [i for job in self.jobs for seg in job for i in seg.wanted]

    @property
    def decoded_frames(self) -> int:
        return sum(seg.decoded for job in self.jobs for seg in job)


class _Frames:
    """Counts the frames a segment decodes, given which frames are references."""

    def __init__(self, n_frames: int, reference: Sequence[bool] | np.ndarray | None):
        self.n_frames = n_frames
        self.reference = None
        if reference is not None:
            self.reference = np.asarray(reference, dtype=bool)
            if len(self.reference) != n_frames:
                raise ValueError("reference flags and keyframe flags differ in length")
            self.cumulative = np.r_[0, np.cumsum(self.reference)]

    def between(self, first: int, last: int, skip_nonref: bool) -> int:
        """Frames decoded from ``first`` to ``last`` inclusive."""
        if last < first:
            return 0
        if skip_nonref:
            return int(self.cumulative[last + 1] - self.cumulative[first])
        return last - first + 1

    def segment(self, start: int, wanted: tuple[int, ...]) -> Segment:
        skip = self.reference is not None and bool(self.reference[list(wanted)].all())
        return Segment(start, wanted, skip, self.between(start, wanted[-1], skip))


def sequential_plan(
    n_frames: int,
    wanted: Sequence[int],
    megapixels: float,
    workers: int = 1,
    reference: Sequence[bool] | np.ndarray | None = None,
    cost: CostModel = DEFAULT_COST,
) -> FramePlan:
    """One pass from the first frame with ``workers`` decode threads (needs no keyframes)."""
    wanted = _checked(wanted, n_frames)
    if not wanted:
        return FramePlan("sequential", (), 1, 0.0)
    job = (_Frames(n_frames, reference).segment(0, tuple(wanted)),)
    threads = max(1, workers)
    return FramePlan("sequential", (job,), threads, _job_s(job, megapixels, threads, cost))


def plan_frames(
    keyframe: Sequence[bool] | np.ndarray,
    wanted: Sequence[int],
    megapixels: float,
    workers: int = 1,
    reference: Sequence[bool] | np.ndarray | None = None,
    cost: CostModel = DEFAULT_COST,
) -> FramePlan:
    """The cheapest plan to decode frames ``wanted`` (presentation-order indices).

    ``keyframe`` has one flag per frame in presentation order (its length is the frame
    count); ``reference`` (optional, same order) flags the frames others predict from;
    ``megapixels`` is the coded frame size, which weighs decoding against the fixed
    per-process and per-seek costs; ``workers`` is how many cores this video may use.

    Candidates: the sequential plan, and for p = 1..workers processes the GOPs holding
    wanted frames split into p contiguous runs of balanced cost, where within a run
    neighbouring GOPs are decoded in one go when the frames between them cost less
    than a seek. The cheapest estimate wins (ties: the sequential plan, fewer processes).
    """
    keyframe = np.asarray(keyframe, dtype=bool)
    n_frames = len(keyframe)
    wanted = _checked(wanted, n_frames)
    best = sequential_plan(n_frames, wanted, megapixels, workers, reference, cost)
    if not wanted:
        return best
    frames = _Frames(n_frames, reference)
    # Frame 0 is always a valid place to start: decoding from the file's start.
    starts = np.union1d([0], np.flatnonzero(keyframe))
    groups: dict[int, tuple[int, ...]] = {}
    for i in wanted:
        start = int(starts[np.searchsorted(starts, i, side="right") - 1])
        groups[start] = groups.get(start, ()) + (i,)
    gops = [frames.segment(start, group) for start, group in groups.items()]
    for processes in range(1, min(max(1, workers), len(gops)) + 1):
        threads = max(1, workers // processes)
        jobs = _partition(gops, processes, frames, megapixels, threads, cost)
        slowdown = 1.0 + cost.process_slowdown * (len(jobs) - 1)
        estimate = max(_job_s(job, megapixels, threads, cost) for job in jobs) * slowdown
        if estimate < best.estimated_s:
            method = "seek" if any(seg.start > 0 for job in jobs for seg in job) else "sequential"
            best = FramePlan(method, jobs, threads, estimate)
    return best


def _checked(wanted: Sequence[int], n_frames: int) -> list[int]:
    wanted = sorted({int(i) for i in wanted})
    if wanted and (wanted[0] < 0 or wanted[-1] >= n_frames):
        raise ValueError(f"frame indices must lie in [0, {n_frames}), got {wanted}")
    return wanted


def _frame_s(megapixels: float, threads: int, cost: CostModel) -> float:
    """Wall seconds to decode one frame with ``threads`` decode threads."""
    return cost.decode_s_per_mpixel * megapixels / (1.0 + cost.thread_gain * (threads - 1))


def _seek_s(frame_s: float, cost: CostModel) -> float:
    return cost.seek_s + cost.seek_frames * frame_s


def _through(a: Segment, b: Segment, frames: _Frames) -> int | None:
    """Frames decoded between ``a`` and ``b`` if one pass covers both; None when they
    differ in skipping (then they stay separate)."""
    if a.skip_nonref != b.skip_nonref:
        return None
    return frames.between(a.wanted[-1] + 1, b.start - 1, a.skip_nonref)


def _gap_s(a: Segment, b: Segment, frames: _Frames, frame_s: float, cost: CostModel) -> float:
    """Cost between two GOP groups in one process: decode on through, or seek (each
    boundary is an independent choice)."""
    through = _through(a, b, frames)
    seek = _seek_s(frame_s, cost)
    return seek if through is None else min(through * frame_s, seek)


def _merge(
    gops: Sequence[Segment], frames: _Frames, frame_s: float, cost: CostModel
) -> tuple[Segment, ...]:
    """Decode neighbouring GOP groups in one pass where that is cheaper than a seek."""
    merged: list[Segment] = []
    for gop in gops:
        through = _through(merged[-1], gop, frames) if merged else None
        if through is not None and through * frame_s <= _seek_s(frame_s, cost):
            last = merged[-1]
            merged[-1] = Segment(
                last.start,
                last.wanted + gop.wanted,
                last.skip_nonref,
                last.decoded + through + gop.decoded,
            )
        else:
            merged.append(gop)
    return tuple(merged)


def _own_s(seg: Segment, frame_s: float, megapixels: float, cost: CostModel) -> float:
    return seg.decoded * frame_s + len(seg.wanted) * cost.output_s_per_mpixel * megapixels


def _job_s(job: Sequence[Segment], megapixels: float, threads: int, cost: CostModel) -> float:
    frame_s = _frame_s(megapixels, threads, cost)
    seeks = (len(job) - 1) * _seek_s(frame_s, cost)
    return cost.process_s + seeks + sum(_own_s(seg, frame_s, megapixels, cost) for seg in job)


def _partition(
    gops: Sequence[Segment],
    parts: int,
    frames: _Frames,
    megapixels: float,
    threads: int,
    cost: CostModel,
) -> tuple[tuple[Segment, ...], ...]:
    """Split the GOP groups into ``parts`` contiguous runs minimising the costliest run."""
    n = len(gops)
    frame_s = _frame_s(megapixels, threads, cost)
    own = np.cumsum([0.0] + [_own_s(g, frame_s, megapixels, cost) for g in gops])
    gaps = [_gap_s(a, b, frames, frame_s, cost) for a, b in zip(gops, gops[1:], strict=False)]
    gap = np.cumsum([0.0, 0.0] + gaps)  # gap[k]: boundaries before GOP group k-1

    def run_s(i: int, j: int) -> float:  # gops[i:j] in one process
        return cost.process_s + own[j] - own[i] + gap[j] - gap[i + 1]

    # best[k][j]: (cost of the costliest run, cut points) splitting gops[:j] into k runs.
    best: list[dict[int, tuple[float, tuple[int, ...]]]] = [{0: (0.0, ())}]
    for k in range(1, parts + 1):
        best.append(
            {
                j: min(
                    (max(best[k - 1][i][0], run_s(i, j)), best[k - 1][i][1] + (i,))
                    for i in range(k - 1, j)
                    if i in best[k - 1]
                )
                for j in range(k, n - (parts - k) + 1)
            }
        )
    cuts = best[parts][n][1][1:] + (n,)
    bounds = zip((0,) + cuts[:-1], cuts, strict=True)
    return tuple(_merge(gops[i:j], frames, frame_s, cost) for i, j in bounds)
