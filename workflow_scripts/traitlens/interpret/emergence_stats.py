"""The emergence statistic of docs/method.md §5: I_max and its p-value, in log space.

F frames; {F_AU} = the N frames with the highest intensity of an AU; {F_unit} = the N
frames with the highest activation of a unit; I_max = the largest |{F_AU} & {F_unit}|
over the U units. The chance of an intersection of at least k = I_max for one unit is the
upper tail of a hypergeometric distribution (F frames, N marked, N drawn); corrected for
U units, p = 1 - (1 - tail)^U. Both are computed in log space so that neither underflows
nor loses precision for large F. Pure numpy and scipy: the tables and nulls that use it
are :mod:`traitlens.interpret.au_emergence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp
from tqdm import tqdm


def _log_comb(n: np.ndarray | float, k: np.ndarray | float) -> np.ndarray:
    return gammaln(np.asarray(n) + 1) - gammaln(np.asarray(k) + 1) - gammaln(np.asarray(n) - k + 1)


def log_tail(k: int, f: int, n: int) -> float:
    """log P(X >= k), X ~ hypergeometric(F=f frames, N=n marked, N=n drawn):
    log sum_{i=k..N} C(F-N, N-i) C(N, i) / C(F, N)."""
    if not 0 < n <= f:
        raise ValueError(f"need 0 < N <= F, got N={n}, F={f}")
    lo = max(k, 0, 2 * n - f)  # below 2N - F the first factor is 0
    if lo > n:
        return -np.inf
    i = np.arange(lo, n + 1)
    terms = _log_comb(f - n, n - i) + _log_comb(n, i) - _log_comb(f, n)
    return float(min(logsumexp(terms), 0.0))


def log_corrected_p(log_tail_value: float, u: int) -> float:
    """log of p = 1 - (1 - tail)^U, stable when the tail is tiny or U large."""
    if log_tail_value == -np.inf:
        return -np.inf
    if log_tail_value >= 0.0:
        return 0.0
    # log(1 - tail) = log1p(-exp(log_tail)); 1 - (1 - t)^U = -expm1(U * log(1 - t))
    log_keep = np.log1p(-np.exp(log_tail_value))
    inner = u * log_keep
    if inner > -1e-300:  # (1 - t)^U within rounding of 1: p ~ U * t
        return float(np.log(u) + log_tail_value)
    return float(np.log(-np.expm1(inner)))


_CHUNK_BYTES = 64 << 20  # columns are ranked a block of about this size at a time


def top_n_mask(values: np.ndarray, n: int, tie_order: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask (same shape) of the ``n`` largest entries of each column. Ties are
    broken by frame order, or, with ``tie_order`` (a permutation of the frames), by the
    position in it: deterministic either way. Columns are ranked in blocks, so memory
    stays near the mask's own at 100,000 frames x 2,048 units."""
    values = np.asarray(values)
    if values.ndim == 1:
        return top_n_mask(values[:, None], n, tie_order)[:, 0]
    f, c = values.shape
    mask = np.zeros(values.shape, dtype=bool)
    step = max(1, _CHUNK_BYTES // max(1, 8 * f))
    for c0 in range(0, c, step):
        cols = slice(c0, min(c, c0 + step))
        if tie_order is None:
            mask[:, cols] = _top_n_block(values[:, cols].T, n).T
        else:
            mask[tie_order, cols] = _top_n_block(values[tie_order, cols].T, n).T
    return mask


def _top_n_block(rows: np.ndarray, n: int) -> np.ndarray:
    """Mask of the ``n`` largest entries of each row of ``rows`` (C, F), ties to the
    earlier entry: what a stable sort of -values would take, in O(F) per row."""
    rows = np.ascontiguousarray(rows)
    f = rows.shape[1]
    if n >= f:
        return np.ones(rows.shape, dtype=bool)
    if rows.dtype.kind == "f" and np.isnan(rows).any():  # NaN ranks last, as in argsort
        order = np.argsort(-rows, axis=1, kind="stable")[:, :n]
        mask = np.zeros(rows.shape, dtype=bool)
        np.put_along_axis(mask, order, True, axis=1)
        return mask
    cut = np.partition(rows, f - n, axis=1)[:, f - n : f - n + 1]  # the n-th largest
    above = rows > cut
    tied = rows == cut
    need = n - above.sum(axis=1, keepdims=True)  # tied entries to take, earliest first
    return above | (tied & (np.cumsum(tied, axis=1) <= need))


@dataclass(frozen=True)
class Emergence:
    unit: int  # best unit (column), the first among ties
    i_max: int
    n: int
    f: int
    u: int
    log_p: float

    @property
    def p(self) -> float:
        return float(np.exp(self.log_p))


def emergence(au: np.ndarray, units: np.ndarray, n: int) -> Emergence:
    """The best unit for one AU: ``au`` (F,) intensities, ``units`` (F, U) activations
    (e.g. each unit's max over its map per frame)."""
    au = np.asarray(au, dtype=float)
    units = np.asarray(units)
    f, u = units.shape
    if au.shape != (f,):
        raise ValueError(f"AU values {au.shape} do not match {f} frames")
    overlap = top_n_mask(au, n).astype(np.int32) @ top_n_mask(units, n).astype(np.int32)
    best = int(np.argmax(overlap))
    k = int(overlap[best])
    return Emergence(best, k, n, f, u, log_corrected_p(log_tail(k, f, n), u))


def null_false_positive_rate(
    au: np.ndarray, units: np.ndarray, n: int, alpha: float, n_perm: int, seed: int
) -> float:
    """Share of permutations (AU values shuffled over frames, which breaks any tie to the
    units) whose best unit reaches p < alpha: the empirical false-positive rate."""
    rng = np.random.default_rng(seed)
    au = np.asarray(au, dtype=float)
    hits = sum(
        emergence(au[rng.permutation(len(au))], units, n).log_p < np.log(alpha)
        for _ in range(n_perm)
    )
    return hits / n_perm


def significance_threshold(f: int, n: int, u: int, alpha: float) -> int:
    """The smallest overlap k whose corrected p is below ``alpha`` (n + 1 when none is):
    p falls with k, so 'best unit significant' is 'I_max >= k'."""
    log_alpha = np.log(alpha)
    for k in range(n + 1):
        if log_corrected_p(log_tail(k, f, n), u) < log_alpha:
            return k
    return n + 1


# --- the cluster-aware test: whole videos moved within their group ----------------------
#
# Frames are not independent: a video's ~10 frames share its AU level, and a person's
# videos share their face. The hypergeometric p above treats every frame as a separate
# draw, so a unit that tells videos or people apart overlaps "significantly" with any AU
# whose level differs between them. The test below keeps that structure under the null:
# it moves whole videos' AU tracks between videos of the same group (person), so only an
# association beyond the group and within-video structure counts.


@dataclass(frozen=True)
class VideoPermutation:
    """Moves whole videos' tracks within strata (same group and same number of frames,
    so that the k-th frames line up). Calling it with an rng gives a frame permutation
    ``perm`` (F,): ``values[perm]`` is the permuted track, video v's k-th frame holding
    the values of video sigma(v)'s k-th frame. Videos alone in their stratum stay put."""

    frame_video: np.ndarray  # (F,) video code of each frame
    frame_rank: np.ndarray  # (F,) the frame's place within its video (0, 1, ...)
    by_video: np.ndarray  # (F,) frames, video by video, each video in frame order
    video_start: np.ndarray  # (V,) where each video starts in by_video
    stratum: np.ndarray  # (V,) stratum code of each video
    by_stratum: np.ndarray  # (V,) videos, stratum by stratum (stable)
    n_videos: int
    n_movable_videos: int  # videos whose stratum holds another video

    def video_maps(self, rng: np.random.Generator, size: int = 1) -> np.ndarray:
        """(size, V) maps sigma: a uniformly random permutation of each stratum's videos."""
        v = self.n_videos
        keys = np.broadcast_to(self.stratum, (size, v))
        shuffled = np.lexsort((rng.random((size, v)), keys), axis=-1)  # stratum by stratum
        sigma = np.empty((size, v), dtype=np.int64)
        sigma[:, self.by_stratum] = shuffled
        return sigma

    def frames_of(self, sigma: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """For frames ``frames`` (any shape) of video v at rank k: the k-th frame of video
        sigma[v]. With one map ``sigma`` (V,) or one per leading row ((B, V), frames (B, ...))."""
        frames = np.asarray(frames)
        videos = self.frame_video[frames]
        if sigma.ndim == 1:
            targets = sigma[videos]
        else:
            rows = np.arange(len(sigma)).reshape((-1,) + (1,) * (frames.ndim - 1))
            targets = sigma[rows, videos]
        return self.by_video[self.video_start[targets] + self.frame_rank[frames]]

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        sigma = self.video_maps(rng)[0]
        return self.frames_of(sigma, np.arange(len(self.frame_video)))

    def derangement(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(sigma (V,), moved (V,) bool): every video of a stratum of two or more gets
        another video's track (the stratum's videos in a random cycle); a video alone in
        its stratum has no partner (moved False, sigma[v] = v)."""
        v = self.n_videos
        order = np.lexsort((rng.random(v), self.stratum))  # stratum by stratum, shuffled
        codes = self.stratum[order]
        start = np.searchsorted(codes, codes, side="left")
        size = np.searchsorted(codes, codes, side="right") - start
        place = np.arange(v) - start
        sigma = np.empty(v, dtype=np.int64)
        sigma[order] = order[start + (place + 1) % size]  # the next one in the cycle
        return sigma, sigma != np.arange(v)


def video_track_permutation(
    videos: np.ndarray, groups: np.ndarray | None = None, order: np.ndarray | None = None
) -> VideoPermutation:
    """The sampler of whole-video permutations for frames of ``videos`` (F,), within
    ``groups`` (F,) (the person of each frame's video; None: one group). ``order`` (F,)
    orders the frames within a video (frame_index; None: the order they come in)."""
    videos = np.asarray(videos)
    f = len(videos)
    if videos.shape != (f,) or f == 0:
        raise ValueError(f"videos must be a non-empty (F,) array, got shape {videos.shape}")
    group_of = np.zeros(f, dtype=np.int64) if groups is None else np.asarray(groups)
    order = np.arange(f) if order is None else np.asarray(order)
    if group_of.shape != (f,) or order.shape != (f,):
        raise ValueError(f"groups {group_of.shape} and order {order.shape} must be ({f},)")
    video_codes, frame_video = np.unique(videos, return_inverse=True)
    n_videos = len(video_codes)
    by_video = np.lexsort((np.arange(f), order, frame_video))
    counts = np.bincount(frame_video, minlength=n_videos)
    video_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frame_rank = np.empty(f, dtype=np.int64)
    frame_rank[by_video] = np.arange(f) - video_start[frame_video[by_video]]
    # a video's group: that of its first frame; a video spread over two groups is a bug
    group_codes = np.unique(group_of, return_inverse=True)[1]
    video_group = group_codes[by_video[video_start]]
    if not np.array_equal(video_group[frame_video], group_codes):
        raise ValueError("a video's frames are given different groups")
    stratum = np.unique(np.stack([video_group, counts]), axis=1, return_inverse=True)[1]
    stratum = np.asarray(stratum).reshape(-1)
    stratum_size = np.bincount(stratum)
    return VideoPermutation(
        frame_video=frame_video,
        frame_rank=frame_rank,
        by_video=by_video,
        video_start=video_start,
        stratum=stratum,
        by_stratum=np.argsort(stratum, kind="stable"),
        n_videos=n_videos,
        n_movable_videos=int((stratum_size[stratum] > 1).sum()),
    )


class _FrameUnits:
    """The units' top-N masks (F, U) stored frame by frame as lists of units (CSR): a
    frame is in about U * N / F units' top N, so an overlap costs N * U * N / F additions
    instead of N * U."""

    def __init__(self, unit_mask: np.ndarray):
        frames, units = np.nonzero(unit_mask)  # row-major: frame by frame
        self.u = unit_mask.shape[1]
        self.indptr = np.concatenate(
            [[0], np.cumsum(np.bincount(frames, minlength=len(unit_mask)))]
        )
        self.units = units.astype(np.int64)

    def overlaps(self, frames: np.ndarray) -> np.ndarray:
        """(M, U) counts: for each of M sets of frames (M, N), how many of its frames are
        in each unit's top N."""
        m = len(frames)
        start = self.indptr[frames].ravel()
        length = (self.indptr[frames + 1] - self.indptr[frames]).ravel()
        total = int(length.sum())
        offset = np.cumsum(length) - length  # where each frame's units go in the output
        pos = np.arange(total) - np.repeat(offset - start, length)
        row = np.repeat(np.arange(m), length.reshape(m, -1).sum(axis=1))
        flat = np.bincount(row * self.u + self.units[pos], minlength=m * self.u)
        return flat.reshape(m, self.u)


def cluster_permutation_p(
    au_mask: np.ndarray,
    unit_mask: np.ndarray,
    permutation: VideoPermutation,
    n_perm: int,
    rng: np.random.Generator | int | Sequence[int],
    progress: bool = False,
    batch: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """(p (A,), observed I_max (A,)) for each AU column of ``au_mask`` (F, A), every
    column marking the same number N of frames: I_max is the largest overlap with any
    unit's top-N set (``unit_mask`` (F, U)); p = (1 + #{permutations with I_max >=
    observed}) / (1 + n_perm), the AUs' tracks moved as whole videos by ``permutation``.

    The permuted AU's top-N set is the image of its marked frames (its tied frames move
    with it), so a permutation costs A x N x (U N / F) additions, not a new sort. The
    image under sigma^-1 is what values[perm] marks; drawing the map directly is the same
    draw, since a uniform permutation within strata is as likely as its inverse."""
    au_mask, unit_mask = np.asarray(au_mask, dtype=bool), np.asarray(unit_mask, dtype=bool)
    if au_mask.ndim != 2 or unit_mask.ndim != 2 or len(au_mask) != len(unit_mask):
        raise ValueError(f"masks {au_mask.shape} and {unit_mask.shape} do not match")
    if len(permutation.frame_video) != len(au_mask):
        raise ValueError("the permutation is over another number of frames")
    if n_perm < 1:
        raise ValueError(f"n_perm must be >= 1, got {n_perm}")
    n_marked = au_mask.sum(axis=0)
    a = au_mask.shape[1]
    if a == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    if not (n_marked == n_marked[0]).all():
        raise ValueError(f"every AU column must mark the same number of frames: {n_marked}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    marked = np.stack([np.flatnonzero(au_mask[:, j]) for j in range(a)])  # (A, N)
    table = _FrameUnits(unit_mask)
    observed = table.overlaps(marked).max(axis=1)
    if permutation.n_movable_videos == 0 or n_marked[0] == len(au_mask):
        # every permutation leaves each AU's top-N set as it is (no video can move, or N
        # marks every frame), so each reaches the observed I_max: p is exactly 1, and
        # drawing the n_perm permutations would only cost time (minutes when N = F and
        # every frame is in every unit's top N)
        return np.ones(a), observed
    reached = np.zeros(a, dtype=np.int64)
    with tqdm(total=n_perm, desc="cluster permutations", unit="perm", disable=not progress) as bar:
        done = 0
        while done < n_perm:
            b = min(batch, n_perm - done)
            sigma = permutation.video_maps(rng, b)  # (B, V)
            moved = permutation.frames_of(sigma, np.broadcast_to(marked, (b, *marked.shape)))
            i_max = table.overlaps(moved.reshape(b * a, -1)).max(axis=1).reshape(b, a)
            reached += (i_max >= observed).sum(axis=0)
            done += b
            bar.update(b)
    return (1 + reached) / (1 + n_perm), observed


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values of ``p`` (any shape): q_(i) = min over j >= i of
    m p_(j) / j, capped at 1, m the number of finite p. NaN stays NaN and is not counted."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    m = len(ok)
    if m == 0:
        return q
    order = ok[np.argsort(flat[ok], kind="stable")]
    scaled = flat[order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    out = q.ravel()
    out[order] = np.minimum(monotone, 1.0)
    return out.reshape(p.shape)


def decoy_tracks(
    values: np.ndarray,
    videos: np.ndarray,
    groups: np.ndarray | None,
    rng: np.random.Generator,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(decoy (F, ...) float, kept (F,) bool): each video's track of ``values`` (F, ...)
    given to another video of the same group and number of frames (never to itself),
    k-th frame to k-th frame. Frames of videos with no such partner are not kept (NaN in
    the decoy). A decoy has the AU's own distribution and clustering but no frame-level
    tie to the units: the negative control of the emergence test."""
    permutation = video_track_permutation(videos, groups, order)
    return decoy_with(values, permutation, rng)


def decoy_with(
    values: np.ndarray, permutation: VideoPermutation, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decoy_tracks` with the strata already built (``permutation``)."""
    values = np.asarray(values, dtype=float)
    sigma, moved = permutation.derangement(rng)
    source = permutation.frames_of(sigma, np.arange(len(values)))
    kept = moved[permutation.frame_video]
    decoy = values[source]
    decoy[~kept] = np.nan
    return decoy, kept
