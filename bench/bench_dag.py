"""Benchmark: planning the full First Impressions DAG (issue 6, part 5).

Lays out 10,000 placeholder files with First Impressions' names and folders and the three
annotation pickles (tests/support/workflow_config.full_corpus_layout), then times
``snakemake -n --quiet rules`` over it (parse-time discovery, config validation, the
manifest helpers, DAG building), repeated, and reports the job count.

Command (repository root): ``.venv/bin/python bench/bench_dag.py --repeats 3``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "workflow_scripts")]

from support.workflow_config import full_corpus_layout  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        configfile = full_corpus_layout(root)
        layout_s = time.perf_counter() - t0
        times, total = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = subprocess.run(
                [snakemake, "--snakefile", str(REPO / "Snakefile"), "--directory", tmp,
                 "--configfile", str(configfile), "-n", "--quiet", "rules"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            times.append(time.perf_counter() - t0)
            total = next(
                int(line.split()[1])
                for line in result.stdout.splitlines()
                if line.startswith("total")
            )
    print(
        json.dumps(
            {
                "videos": 10000,
                "layout_s": round(layout_s, 2),
                "dry_run_s": [round(t, 2) for t in times],
                "jobs": total,
            }
        )
    )


if __name__ == "__main__":
    main()
