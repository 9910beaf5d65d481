"""Benchmark: one training job on 2 torch threads against two jobs on 1 thread each, side
by side, on a 2-core machine (config ``train.threads``; the demo's four CNNs are
independent jobs, so Snakemake can run two at once when each takes one core).

Each round runs, in turns, ``bench_train.py``'s in-memory case (the demo's image model by
default: VGG16 widths / 8, batch norm, 96x96, Adam, batch 32):

  one job     one process with ``--threads 2``
  two jobs    two processes with ``--threads 1`` started together

and reports images/s: the one job's, and the two jobs' sum (what the machine trains per
second while two of the demo's models train). "ratio" is two jobs / one job, per round.

Command (repository root), about 1.5 min a round on the 2-core VM:

  .venv/bin/python bench/bench_train_threads.py --rounds 2

Extra arguments after ``--`` go to bench_train.py (e.g. ``-- --input-size 128`` for the
face models' size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_IMG_MODEL = [
    "--device", "cpu", "--width-divisor", "8", "--batch-norm", "--input-size", "96",
    "--frame-size", "216x384", "--optimizer", "adam", "--batch", "32", "--steps", "15",
    "--warmup", "2", "--repeats", "3", "--num-workers", "0",
]  # fmt: skip


def start(threads: int, out: Path, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, str(HERE / "bench_train.py"), *DEMO_IMG_MODEL, *extra]
    cmd += ["--threads", str(threads), "--json", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def images_per_s(procs: list[tuple[subprocess.Popen, Path]]) -> list[float]:
    rates = []
    for proc, out in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"bench_train.py failed ({proc.returncode}):\n{err[-2000:]}")
        rates.append(float(json.loads(out.read_text())["images_per_s_in_memory"]))
    return rates


def summary(single: float, pair: list[float]) -> tuple[str, float]:
    """The two jobs' images/s as "a + b = sum", and their sum over the one job's."""
    return f"{pair[0]:.1f} + {pair[1]:.1f} = {sum(pair):.1f}", sum(pair) / single


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("extra", nargs="*", help="after --: more bench_train.py arguments")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one = Path(tmp, f"one_{r}.json")
            (single,) = images_per_s([(start(2, one, args.extra), one)])
            outs = [Path(tmp, f"two_{r}_{k}.json") for k in range(2)]
            pair = images_per_s([(start(1, o, args.extra), o) for o in outs])
            rows.append((single, pair))
            two, ratio = summary(single, pair)
            print(
                f"round {r + 1}: one job {single:.1f}, two jobs {two}, ratio {ratio:.2f}",
                file=sys.stderr,
            )
    print("| round | one job, 2 threads | two jobs, 1 thread each (sum) | ratio |")
    print("|---|---|---|---|")
    for r, (single, pair) in enumerate(rows, 1):
        two, ratio = summary(single, pair)
        print(f"| {r} | {single:.1f} | {two} | {ratio:.2f} |")
    ratios = [summary(single, pair)[1] for single, pair in rows]
    print(f"\nmedian ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
