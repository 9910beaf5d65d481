"""What the demo data set will hold, decided from the config alone (no rendering).

:func:`plan_videos` is cheap and pure, so the workflow can call it at parse time to know
the video ids (the generator's outputs) before anything is generated.

Ids follow First Impressions: ``<11-char YouTube-like user id>.<NNN>``, several clips per
user, user ids drawn from YouTube's alphabet ``[A-Za-z0-9_-]``. Every third user id
starts with '-' (the first with '--', like ``--Ymqszjv54``) so the workflow is always
exercised on ids that could read as command-line options.

Splits are 60/20/20 training/validation/test, of persons by default (config
``demo.split_by: person``): a person's clips stay in one split, so a model is tested on
people it never saw, and what it learnt of a person's look cannot pass for the trait
signal. ``split_by: clip`` splits the videos one by one (a person in several splits),
for comparison. Split sizes come from the largest-remainder rule, with every split
non-empty.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from traitlens.core.config import from_section
from traitlens.core.errors import UserError

SPLITS = ("training", "validation", "test")  # as in the annotation file names
SPLIT_SHARES = (0.6, 0.2, 0.2)
SPLIT_BY = ("person", "clip")
ID_ALPHABET = string.ascii_letters + string.digits + "_-"
ID_LENGTH = 11
BACKGROUNDS = ("per_user", "per_clip")


@dataclass(frozen=True)
class DemoConfig:
    """The ``demo:`` config section (ground_truth, the folder, is the rules' business)."""

    seed: int = 7
    n_videos: int = 400
    n_identities: int = 40
    duration_s: float = 2.0
    fps: int = 10
    width: int = 384
    height: int = 216
    noise_sd: float = 0.04
    # per_user: one room per person, as First Impressions' clips of one person are cut from
    # one video; per_clip: every clip its own wall, a cue that tells training clips apart
    background: str = "per_user"
    split_by: str = "person"  # person: a person's clips share a split | clip: one by one
    # range of a person's face height / frame height (a talking head, as First Impressions)
    face_height: tuple[float, float] = (0.5, 0.6)

    def __post_init__(self) -> None:
        # the rules the schema cannot state: identities are shared out over the videos,
        # and a split by person needs a person in each of the three splits
        if not 1 <= self.n_identities <= self.n_videos:
            raise UserError(
                f"config demo.n_identities {self.n_identities}: must be between 1 and "
                f"demo.n_videos ({self.n_videos})"
            )
        if self.split_by == "person" and self.n_identities < len(SPLITS):
            raise UserError(
                f"config demo.split_by person needs at least {len(SPLITS)} persons (one per "
                f"split), got demo.n_identities {self.n_identities}; raise it or set "
                "demo.split_by: clip"
            )
        lo, hi = self.face_height
        if not 0 < lo <= hi:
            raise UserError(
                f"config demo.face_height {list(self.face_height)}: need 0 < low <= high"
            )

    @property
    def n_frames(self) -> int:
        return max(1, int(round(self.duration_s * self.fps)))

    @classmethod
    def from_mapping(cls, cfg: Mapping) -> DemoConfig:
        """From the validated ``demo:`` section."""
        return from_section(cls, cfg, "demo")


@dataclass(frozen=True)
class PlannedVideo:
    index: int  # position in the plan
    video_id: str  # e.g. '--Ymqszjv54.001'
    user_id: str  # the 11-char part
    clip: int
    identity: int
    split: str  # training | validation | test
    seed: int  # this video's own random stream

    @property
    def filename(self) -> str:
        return f"{self.video_id}.mp4"


def user_ids(n: int, seed: int) -> list[str]:
    """``n`` distinct 11-char YouTube-like ids; every third starts with '-'."""
    rng = np.random.default_rng([seed, 0])
    ids: list[str] = []
    while len(ids) < n:
        k = len(ids)
        chars = [ID_ALPHABET[i] for i in rng.integers(0, len(ID_ALPHABET), ID_LENGTH)]
        if k % 3 == 0:
            chars[0] = "-"
        if k == 0:
            chars[1] = "-"
        candidate = "".join(chars)
        if candidate not in ids:
            ids.append(candidate)
    return ids


def split_counts(n: int) -> tuple[int, int, int]:
    """Largest-remainder split of ``n`` items into 60/20/20, no split empty (n >= 3)."""
    exact = [n * s for s in SPLIT_SHARES]
    counts = [int(np.floor(e)) for e in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):  # take from the largest split for any empty one
        if counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] = 1
    return counts[0], counts[1], counts[2]


def _labels_for(n: int, rng: np.random.Generator) -> list[str]:
    counts = split_counts(n)
    labels = [s for s, c in zip(SPLITS, counts, strict=True) for _ in range(c)]
    return [labels[i] for i in rng.permutation(n)]


def plan_videos(demo_cfg: Mapping | DemoConfig) -> list[PlannedVideo]:
    """The demo videos (ids, identities, splits, seeds), deterministic from the config."""
    cfg = demo_cfg if isinstance(demo_cfg, DemoConfig) else DemoConfig.from_mapping(demo_cfg)
    users = user_ids(cfg.n_identities, cfg.seed)
    clips = [
        cfg.n_videos // cfg.n_identities + (1 if k < cfg.n_videos % cfg.n_identities else 0)
        for k in range(cfg.n_identities)
    ]
    rng = np.random.default_rng([cfg.seed, 3])
    if cfg.split_by == "person":
        id_split = _labels_for(cfg.n_identities, rng)
        video_split = [id_split[k] for k in range(cfg.n_identities) for _ in range(clips[k])]
    else:
        video_split = _labels_for(cfg.n_videos, rng)
    plan = []
    for k in range(cfg.n_identities):
        for c in range(1, clips[k] + 1):
            i = len(plan)
            state = np.random.SeedSequence([cfg.seed, 1, k, c]).generate_state(2, np.uint32)
            plan.append(
                PlannedVideo(
                    index=i,
                    video_id=f"{users[k]}.{c:03d}",
                    user_id=users[k],
                    clip=c,
                    identity=k,
                    split=video_split[i],
                    seed=int(state[0]) << 32 | int(state[1]),
                )
            )
    return plan
