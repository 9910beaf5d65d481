"""Benchmark: the workflow tests' tiny demo from scratch, as their shared fixture builds
it (``support.workflow.tiny_demo_config`` through ``run_snakemake``, 2 cores), with a
chosen thread count for the PyTorch jobs and the CPU analyses.

Command (repository root), one run of each, in turns; repeat the pair for more:

  .venv/bin/python bench/bench_tiny_demo.py --threads 1 /tmp/tiny_1
  .venv/bin/python bench/bench_tiny_demo.py --threads 2 /tmp/tiny_2

Prints the run's return code and wall seconds. The folder is emptied first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "workflow_scripts")]

from support.workflow import run_snakemake, tiny_demo_config, write_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="work folder (emptied first)")
    ap.add_argument("--threads", type=int, default=1, help="train.threads and analysis.threads")
    args = ap.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    configfile = write_config(args.folder / "tiny.yaml", tiny_demo_config(args.threads))
    start = time.monotonic()
    result = run_snakemake(args.folder, configfile)
    print(f"rc {result.returncode} wall {time.monotonic() - start:.1f} s")
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])


if __name__ == "__main__":  # the runner forks from a forkserver: guard the entry point
    main()
