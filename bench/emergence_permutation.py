"""Benchmark: the cluster-aware AU-emergence test at First Impressions' size.

Goal (AU emergence, cluster-aware p): 100,000 frames (10,000 videos x 10 frames, ~3,060
people), 2,048 units, 17 AUs, N = 100 and 1,000 permutations in <= 10 minutes on the
project's 2-core VM. Builds synthetic data (not timed): every track (AU or unit) is a
person offset + a video level (sd 2) + frame noise (sd 1), as clustered as the real
corpus; 2% of frames are dropped at random (faces not found), so videos differ in
length as they do after the AU join; three units follow AU00-AU02 frame by frame. Then
times, as the rule ``find_au_detectors`` runs them:

  masks      the top-N masks of the AUs and of the units (``au_emergence.top_n_masks``)
  paper      ``emergence_table`` without videos: the paper's p only
  verdict    ``emergence_table`` with videos and groups: the paper's p, the decoy
             tracks, and the cluster-aware p of 17 AUs + 17 decoys (1,000 whole-video
             permutations within each person), BH

and checks the answer: the three followed AUs significant, no decoy significant.

Command (repository root):
  /usr/bin/time -v .venv/bin/python bench/emergence_permutation.py

Output: a markdown table on stdout and a JSON object written to
bench/results/emergence_permutation.json (``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/machine.py

import numpy as np  # noqa: E402
from machine import cpu_name  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synthetic(args) -> tuple[np.ndarray, ...]:
    """(au (F, A) float64, units (F, U) float32, videos (F,), groups (F,), frame_index (F,))."""
    rng = np.random.default_rng(args.seed)
    v, per = args.videos, args.frames_per_video
    # every person has a video; the rest are spread at random (~3.3 videos a person)
    person = np.concatenate([np.arange(args.groups), rng.integers(0, args.groups, v - args.groups)])
    videos = np.repeat(np.arange(v), per)
    frame_index = np.tile(np.arange(per), v)
    groups = person[videos]
    keep = rng.random(len(videos)) >= args.drop  # frames with no face left out
    videos, frame_index, groups = videos[keep], frame_index[keep], groups[keep]
    f = len(videos)

    def tracks(k: int, dtype) -> np.ndarray:
        out = np.empty((f, k), dtype=dtype)
        for c0 in range(0, k, 256):  # in blocks: the float64 temporaries stay small
            c1 = min(k, c0 + 256)
            block = rng.standard_normal((args.groups, c1 - c0))[groups]
            block += 2.0 * rng.standard_normal((v, c1 - c0))[videos]
            block += rng.standard_normal((f, c1 - c0))
            out[:, c0:c1] = block
        return out

    au = tracks(args.aus, np.float64)
    units = tracks(args.units, np.float32)
    for a in range(3):  # units 100, 101, 102 follow AU00-AU02 frame by frame
        units[:, 100 + a] = au[:, a] + rng.standard_normal(f)
    return au, units, videos.astype(str), groups.astype(str), frame_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--frames-per-video", type=int, default=10)
    parser.add_argument("--groups", type=int, default=3_060)
    parser.add_argument("--drop", type=float, default=0.02, help="share of frames left out")
    parser.add_argument("--units", type=int, default=2_048)
    parser.add_argument("--aus", type=int, default=17)
    parser.add_argument("--n-top", type=int, default=100)
    parser.add_argument("--perms", type=int, default=1_000)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(REPO / "bench/results/emergence_permutation.json"))
    args = parser.parse_args()

    from traitlens.interpret.au_emergence import emergence_table, top_n_masks

    start = time.perf_counter()
    au, units, videos, groups, frame_index = synthetic(args)
    made = time.perf_counter() - start
    f, u = units.shape
    labels = [("conv5_3", j) for j in range(u)]
    names = [f"AU{a:02d}" for a in range(args.aus)]
    stages: dict[str, float] = {}

    t0 = time.perf_counter()
    masks = top_n_masks(au, units, args.n_top, 0)
    stages["masks"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    emergence_table(au, units, labels, names, args.n_top, 0, masks)
    stages["paper"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = emergence_table(
        au, units, labels, names, args.n_top, 0, masks, videos=videos, groups=groups,
        frame_order=frame_index, n_perm=args.perms, alpha=args.alpha, progress=True,
    )  # fmt: skip
    stages["verdict"] = time.perf_counter() - t0
    total = stages["masks"] + stages["verdict"]

    decoys = table["au"].str.endswith("_decoy")
    real = table[~decoys].set_index("au")
    found = sorted(real.index[real["significant"]])
    decoy_found = sorted(table.loc[decoys & table["significant"], "au"])
    ok = found == names[:3] and not decoy_found
    result = {
        "frames": f, "videos": args.videos, "groups": args.groups, "units": u,
        "aus": args.aus, "n_top": args.n_top, "perms": args.perms,
        "movable_videos": int(table["n_movable_videos"].iloc[0]),
        "synthetic_data_s": round(made, 2),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "total_s": round(total, 2), "peak_rss_mb": round(peak_rss_mb()),
        "significant": found, "significant_decoys": decoy_found, "as_planted": ok,
        "min_p_perm_unplanted": float(real["p_perm"].drop(names[:3]).min()),
        "machine": cpu_name(), "python": platform.python_version(),
        "numpy": np.__version__,
    }  # fmt: skip
    print(f"| step ({f:,} frames x {u:,} units, {args.aus} AUs, N = {args.n_top}) | seconds |")
    print("|---|---|")
    print(f"| top-N masks of the AUs and units | {stages['masks']:.1f} |")
    print(f"| the paper's table alone (for reference) | {stages['paper']:.1f} |")
    print(
        f"| the verdict: decoys + {args.perms:,} whole-video permutations of "
        f"{2 * args.aus} tracks + BH | {stages['verdict']:.1f} |"
    )
    print(f"| **masks + verdict (the rule's table)** | **{total:.1f}** |")
    print(f"peak RSS {result['peak_rss_mb']} MB; movable videos {result['movable_videos']:,}")
    print(f"significant: {found}; significant decoys: {decoy_found}; as planted: {ok}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
