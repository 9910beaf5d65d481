"""Time the demo data set generation at the default config size.

Command (repository root): .venv/bin/python bench/bench_demo.py [--threads 2]
Generates the config.yaml demo (videos, pickles, ground truth) into a temporary folder
through the same function the generate_demo rule runs, and prints a Markdown row.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from traitlens.demo.generate import default_outputs, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    demo = yaml.safe_load((REPO / "config.yaml").read_text())["demo"]
    with tempfile.TemporaryDirectory() as tmp:
        videos, annotations, truth = default_outputs(Path(tmp), demo)
        start = time.perf_counter()
        generate(demo, videos, annotations, truth, threads=args.threads, progress=False)
        seconds = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 1e6
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime + sum(os.times()[:2])
    frames = demo["n_videos"] * round(demo["duration_s"] * demo["fps"])
    print("| videos | frames | size | threads | seconds | CPU s | frames/s |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {demo['n_videos']} x {demo['duration_s']} s, {demo['width']}x{demo['height']} "
        f"| {frames} | {size_mb:.1f} MB | {args.threads} | {seconds:.1f} | {cpu:.1f} "
        f"| {frames / seconds:.0f} |"
    )


if __name__ == "__main__":
    main()
