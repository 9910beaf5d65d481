"""Simulated AU tracks and unit activations clustered as First Impressions is: frames
within videos, videos within people (tests/test_emergence_permutation.py,
tests/test_break_on_purpose.py)."""

from __future__ import annotations

import numpy as np


def clustered(seed: int, a: int = 10, u: int = 128, video_sd: float = 2.0, group_sd: float = 1.0):
    """(videos, groups, frame_order, au_values (F, a), units (F, u)): 40 people x 10
    videos x 10 frames, every track = person offset + video level + frame noise (sd 1),
    the AUs independent of the units."""
    rng = np.random.default_rng(seed)
    n_groups, per_group, per_video = 40, 10, 10
    n_videos = n_groups * per_group
    videos = np.repeat(np.arange(n_videos), per_video)
    groups = videos // per_group
    f = len(videos)

    def tracks(k: int) -> np.ndarray:
        person = group_sd * rng.standard_normal((n_groups, k))[groups]
        video = video_sd * rng.standard_normal((n_videos, k))[videos]
        return person + video + rng.standard_normal((f, k))

    order = np.tile(np.arange(per_video), n_videos)
    return videos, groups, order, tracks(a), tracks(u)
