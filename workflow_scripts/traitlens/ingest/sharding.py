"""Stable sharding: which group of videos a video belongs to.

A shard is picked from a hash of the video id alone, so a video's shard never depends on
the other videos: adding one video re-runs only its shard (and what aggregates shards).
The shard count is a power of two derived from the corpus size, unless pinned in config.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable


def shard_count(n_videos: int, videos_per_shard: int, pinned: int | None = None) -> int:
    """Number of shards: ``pinned`` if given, else ceil(n/size) rounded up to a power of 2.

    Rounding to a power of two keeps the count unchanged while a corpus grows a little,
    so the shard assignment (hash mod count) stays stable.
    """
    if pinned is not None:
        if pinned < 1:
            raise ValueError(f"n_shards must be >= 1, got {pinned}")
        return pinned
    if videos_per_shard < 1:
        raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    needed = max(1, math.ceil(n_videos / videos_per_shard))
    return 1 << (needed - 1).bit_length()


def shard_index(video_id: str, n_shards: int) -> int:
    """Shard number of ``video_id``: a stable hash (SHA-1, not Python's salted hash)."""
    digest = hashlib.sha1(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n_shards


def shard_name(index: int, n_shards: int) -> str:
    """Zero-padded shard name, e.g. ``s007``; the width fits the largest index."""
    width = max(3, len(str(n_shards - 1)))
    return f"s{index:0{width}d}"


def assign_shards(video_ids: Iterable[str], n_shards: int) -> dict[str, list[str]]:
    """Map shard name -> sorted video ids, for the shards that hold at least one video."""
    shards: dict[str, list[str]] = {}
    for video_id in video_ids:
        shards.setdefault(shard_name(shard_index(video_id, n_shards), n_shards), []).append(
            video_id
        )
    return {name: sorted(ids) for name, ids in sorted(shards.items())}
