"""Benchmark: peak memory of every workflow stage at two data set sizes, disk per video.

Runs the real workflow (``snakemake --cores 2``, local, every rule of the default target)
on the demo format at each ``--sizes`` number of videos, each in its own folder under
``--workdir`` (``n<size>/``: resources/ and results/ land there), with the models of
tests/support/workflow.py ``tiny_models`` (VGG16 widths / 16 at 32x32, one epoch, 200 bootstrap
resamples) and every other setting from config.yaml (10 frames per video, 384x216
frames, 112-px aligned faces, 16 videos per shard, activation maps stored). Then reads
every job's Snakemake benchmark file (results/bench/benchmarks/..., column max_rss in MB:
the job's process tree, sampled by Snakemake every 0.5 s for its first ~15 s, every 30 s
after, so short peaks are missed) and every job's exact peak RSS (VmHWM of the job's
Python process, children not included, appended at exit to n<size>/peaks.jsonl by a
sitecustomize.py that the bench puts on the jobs' PYTHONPATH), and tabulates per rule
(per model / source / layer where the rule has one job per such wildcard; the shard
wildcard is pooled, its jobs' maximum shown): both figures at each size and their
ratios. Per-shard jobs see about the same number of videos at both sizes (the shard
count grows with the videos), so they should be flat; aggregate jobs (training,
prediction, dumps, analyses) see every frame.

Disk: bytes under each results/bench/<stage> folder (and the generated videos) divided
by the number of videos, at each size; and an estimate for First Impressions (10,000
videos of ~15 s, config/first_impressions.yaml: 640x360 frames, 10 per video, 224-px
aligned faces, VGG16 activations without maps) from the datasets' shapes, printed next
to the same formula at the demo's settings so it can be checked against the measurement.

Command (repository root; ~9 min on the 2-core VM):
  .venv/bin/python bench/bench_memory.py --sizes 48 192

Output: progress on stderr, Markdown tables on stdout, JSON (machine, settings, videos
per shard, every job's record, the per-rule table, disk per video, the FI estimate) in
``--json`` (default bench/results/bench_memory.json). ``--no-run`` tabulates existing
work folders again.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_name  # noqa: E402

from support.workflow import default_config, tiny_models  # noqa: E402

NAME = "bench"
# rules/*.smk in the order the data flows (the table's order)
RULE_FILES = ("data", "extract", "faces", "aus", "train", "activations", "analysis")
# The wildcard that splits a rule into equal jobs by videos; pooled in the table.
POOLED = "shard"


# --- running ---------------------------------------------------------------------------


def bench_config(n_videos: int) -> dict:
    config = tiny_models(default_config())
    config["dataset"]["name"] = NAME
    config["demo"]["n_videos"] = n_videos
    return config


# Written as sitecustomize.py into a folder put on the jobs' PYTHONPATH: at exit, a
# Snakemake script job appends its rule, wildcards and its own peak RSS (VmHWM: exact,
# but of the Python process alone; ffmpeg children are not in it) to $TRAITLENS_PEAK_LOG.
PEAK_HOOK = """
import atexit, json, os


def _traitlens_peak():
    try:
        import __main__

        sm = getattr(__main__, "snakemake", None)
        if sm is None or not hasattr(sm, "rule"):
            return
        status = open("/proc/self/status").read().split("\\n")
        hwm = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")][0]
        record = {"rule": sm.rule, "wildcards": dict(sm.wildcards.items()),
                  "peak_mb": hwm / 1024}
        with open(os.environ["TRAITLENS_PEAK_LOG"], "a") as f:
            f.write(json.dumps(record) + "\\n")
    except Exception:  # a measurement must never fail the job it measures
        pass


if os.environ.get("TRAITLENS_PEAK_LOG"):
    atexit.register(_traitlens_peak)
"""


def run_workflow(folder: Path, config: dict, cores: int) -> float:
    """Run the default target in ``folder`` from scratch, every job's peak RSS logged to
    ``folder/peaks.jsonl``; wall seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    hook = folder / "peak_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PEAK_HOOK)
    env = dict(os.environ, TRAITLENS_PEAK_LOG=str(folder / "peaks.jsonl"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [
        "nice", "-n", "10",
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(folder),
        "--configfile", str(configfile),
        "--cores", str(cores),
    ]  # fmt: skip
    start = time.perf_counter()
    with open(folder / "snakemake.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    (folder / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
    if done.returncode:
        sys.exit(f"snakemake failed in {folder} (exit {done.returncode}); see snakemake.log")
    return seconds


# --- benchmark files -------------------------------------------------------------------


def benchmark_patterns(rules_dir: Path = REPO / "rules") -> list[tuple[str, re.Pattern]]:
    """(rule, regex over the path under BENCHMARKS with named wildcard groups) for every
    rule's ``benchmark:`` directive in rules/*.smk."""
    out = []
    for stem in RULE_FILES:
        smk = rules_dir / f"{stem}.smk"
        rule = None
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            head = re.match(r"\s*rule (\w+):", line)
            if head:
                rule = head.group(1)
            if rule and line.strip() == "benchmark:":
                template = re.search(r'\{BENCHMARKS\}/([^"]+)"', lines[i + 1]).group(1)
                parts = re.split(r"\{\{(\w+)\}\}", template)
                regex = "".join(
                    re.escape(p) if k % 2 == 0 else f"(?P<{p}>[^/]+?)" for k, p in enumerate(parts)
                )
                out.append((rule, re.compile(regex + "$")))
    return out


def job_key(rule: str, wildcards: dict[str, str]) -> str:
    """'rule[model, layer]': the rule and its wildcards but the pooled one."""
    named = [wildcards[k] for k in sorted(wildcards) if k != POOLED]
    return f"{rule}[{', '.join(named)}]" if named else rule


def read_peaks(path: Path) -> pd.DataFrame:
    """job, peak_mb (the job's Python process VmHWM) from the hook's log."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(
        {
            "job": [job_key(r["rule"], r["wildcards"]) for r in records],
            "peak_mb": [float(r["peak_mb"]) for r in records],
        }
    )


def read_jobs(results: Path, patterns) -> pd.DataFrame:
    """One row per job: rule, job (rule plus its non-shard wildcards), wildcards,
    seconds, max_rss (MB), cpu_time (s)."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        rel = path.relative_to(results / "benchmarks").as_posix()
        found = [(rule, m) for rule, regex in patterns if (m := regex.match(rel))]
        if not found:
            raise SystemExit(f"{path}: no rule's benchmark: directive matches it")
        rule, m = found[0]
        record = pd.read_csv(path, sep="\t").iloc[-1]
        wild = m.groupdict()
        rows.append(
            {
                "rule": rule,
                "job": job_key(rule, wild),
                "wildcards": wild,
                "seconds": float(record["s"]),
                "max_rss": float(record["max_rss"]),
                "cpu_time": float(record["cpu_time"]),
            }
        )
    return pd.DataFrame(rows)


def per_job_table(jobs: dict[int, pd.DataFrame], peaks: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per job key and size: n jobs, sampled max RSS of the process tree (their maximum),
    exact peak of the Python process (their maximum), seconds (their maximum); the ratios
    of the largest size's figures to the smallest's."""
    sizes = sorted(jobs)
    parts = []
    for size in sizes:
        g = jobs[size].groupby("job")
        part = pd.DataFrame(
            {
                f"jobs_{size}": g.size(),
                f"rss_{size}": g["max_rss"].max(),
                f"seconds_{size}": g["seconds"].max(),
                f"peak_{size}": peaks[size].groupby("job")["peak_mb"].max(),
            }
        )
        parts.append(part)
    table = pd.concat(parts, axis=1)
    table["ratio"] = table[f"rss_{sizes[-1]}"] / table[f"rss_{sizes[0]}"]
    table["peak_ratio"] = table[f"peak_{sizes[-1]}"] / table[f"peak_{sizes[0]}"]
    rule_of = pd.concat(jobs.values()).drop_duplicates("job").set_index("job")["rule"]
    first_rule = rule_of.to_dict()
    table["rule"] = [first_rule[j] for j in table.index]
    order = {rule: n for n, (rule, _) in enumerate(benchmark_patterns())}
    return table.sort_values(by="rule", key=lambda s: s.map(order), kind="stable")


# --- disk ------------------------------------------------------------------------------


# results/<name>/ folders in the order the data flows (the disk table's order)
STAGES = ("frames", "audio", "faces", "aus", "qc", "models", "activations", "cam", "tables")


def _stage_rank(name: str) -> int:
    return STAGES.index(name) if name in STAGES else len(STAGES)


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def disk_per_video(folder: Path, n_videos: int) -> dict[str, float]:
    """Bytes per video under each results/<name>/ entry (benchmarks and logs pooled as
    'bookkeeping', single files as 'tables etc.'), and of the generated videos."""
    results = folder / "results" / NAME
    out: dict[str, float] = {}
    out["videos (generated input)"] = folder_bytes(folder / "resources/demo/videos") / n_videos
    for entry in sorted(results.iterdir(), key=lambda e: (_stage_rank(e.name), e.name)):
        if entry.name in ("benchmarks", "logs"):
            key = "benchmarks + logs"
        elif entry.is_file():
            key = "top-level files"
        else:
            key = entry.name
        out[key] = out.get(key, 0.0) + folder_bytes(entry) / n_videos
    return out


# --- First Impressions estimate --------------------------------------------------------

LANDMARKS = 478
TEST_FRACTION = 0.2
AUDIO_SECONDS = {"demo": None, "first_impressions": 15.0}
# VGG16 units of the dumped layers and their map side at a 224 input (halved per pool)
VGG_UNITS = {"conv4_3": 512, "conv5_1": 512, "conv5_2": 512, "conv5_3": 512}
MAP_DIVISOR = {"conv4_3": 8, "conv5_1": 16, "conv5_2": 16, "conv5_3": 16}


def stage_bytes_per_video(config: dict, seconds: float) -> dict[str, float]:
    """Payload bytes per video of the per-frame intermediates from their shapes (HDF5
    chunk and string overheads left out): frames, audio, faces, activations."""
    ex, faces = config["extract"], config["faces"]
    n = ex["frames_per_video"]
    frames = n * ex["frame_width"] * ex["frame_height"] * 3
    hops = seconds * 1000 / ex["audio"]["hop_ms"]
    audio = hops * ex["audio"]["n_mels"] * 4  # float32
    s = faces["aligned_size"]
    # aligned uint8, landmarks (478, 3) + aligned_landmarks (478, 2) + box 4 + transform 6
    # + score float32, indices int32 x2, success, n_faces_seen
    per_face = s * s * 3 + 4 * (LANDMARKS * 5 + 4 + 6 + 1) + 8 + 2
    act = config["activations"]
    divisor = config["models"]["visual"]["width_divisor"]
    size = config["models"]["face"]["input_size"]
    activations = 0.0
    for layer in act["layers"]:
        units = VGG_UNITS[layer] // divisor
        activations += units * 12  # max, mean float32, argmax int32 (before lzf)
        if act["store_maps"]:
            side = size // MAP_DIVISOR[layer]
            activations += units * side * side * 2  # float16 maps
    # CAM files: test frames (a fifth of the videos in both data sets) of 3 sources, per
    # frame 5 maps at conv5 size (input / 16) and 5 predictions in float32, frame index
    # and row, 2 strings (~40 bytes each in HDF5's heap)
    side = config["models"]["img"]["input_size"] // 16
    cam = 3 * TEST_FRACTION * n * (5 * side * side * 4 + 5 * 4 + 12 + 2 * 40)
    return {
        "frames": frames,
        "audio": audio,
        "faces": n * per_face,
        "activations": n * activations if "face" in act["models"] else 0.0,
        "cam": cam,
    }


def fixed_bytes(config: dict) -> dict[str, float]:
    """Bytes that do not grow with the videos: the four visual models (weights.pt, and
    the last checkpoint: weights plus one (SGD momentum) or two (Adam moments) buffers of
    the same size) and the dumps' top-K maps (float16) per layer."""
    from traitlens.models.dan import DanConfig, make_model

    visual = config["models"]["visual"]
    buffers = {"sgd": 1, "adam": 2}[visual["optimizer"]]
    models = 0.0
    for name in ("img", "face", "img_cam", "face_cam"):
        cfg = DanConfig.from_mapping({**visual, **config["models"][name]})
        params = sum(p.numel() for p in make_model(cfg).parameters())
        models += params * 4 * (1 + 1 + buffers)
    act = config["activations"]
    divisor = config["models"]["visual"]["width_divisor"]
    size = config["models"]["face"]["input_size"]
    top = sum(
        VGG_UNITS[layer] // divisor * act["top_k"] * (size // MAP_DIVISOR[layer]) ** 2 * 2
        for layer in act["layers"]
    )
    return {"models": models, "activations top-K maps": top}


def fi_estimate(measured: dict[str, float], demo_config: dict) -> dict:
    """The formula at the demo's settings (to check against ``measured``) and at First
    Impressions', per video and for 10,000 videos."""
    fi = yaml.safe_load((REPO / "config/first_impressions.yaml").read_text())
    demo_seconds = demo_config["demo"]["duration_s"]
    demo = stage_bytes_per_video(demo_config, demo_seconds)
    first = stage_bytes_per_video(fi, AUDIO_SECONDS["first_impressions"])
    per_video = {
        stage: {
            "demo_formula": demo[stage],
            "demo_measured": measured[stage],
            "fi_per_video": first[stage],
            "fi_10000_videos_gb": first[stage] * 10_000 / 1e9,
        }
        for stage in demo
    }
    demo_fixed, fi_fixed = fixed_bytes(demo_config), fixed_bytes(fi)
    fixed = {
        name: {"demo_formula": demo_fixed[name], "fi_gb": fi_fixed[name] / 1e9} for name in fi_fixed
    }
    return {"per_video": per_video, "fixed": fixed}


# --- output ----------------------------------------------------------------------------


def markdown(table: pd.DataFrame, sizes: list[int]) -> str:
    a, b = sizes[0], sizes[-1]
    lines = [
        f"| job | jobs at {a} / {b} | sampled max RSS MB, {a} / {b} videos | ratio "
        f"| peak RSS MB, {a} / {b} videos | ratio | seconds {a} / {b} |",
        "|---|---|---|---|---|---|---|",
    ]
    for job, r in table.iterrows():
        lines.append(
            f"| {job} | {r[f'jobs_{a}']:.0f} / {r[f'jobs_{b}']:.0f} "
            f"| {r[f'rss_{a}']:.0f} / {r[f'rss_{b}']:.0f} | {r['ratio']:.2f} "
            f"| {r[f'peak_{a}']:.0f} / {r[f'peak_{b}']:.0f} | {r['peak_ratio']:.2f} "
            f"| {r[f'seconds_{a}']:.1f} / {r[f'seconds_{b}']:.1f} |"
        )
    return "\n".join(lines)


def disk_markdown(disk: dict[int, dict[str, float]]) -> str:
    sizes = sorted(disk)
    keys = list(dict.fromkeys(k for s in sizes for k in disk[s]))
    lines = [
        "| stage | " + " | ".join(f"KB per video, {s} videos" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for k in keys:
        cells = " | ".join(f"{disk[s].get(k, 0) / 1e3:,.1f}" for s in sizes)
        lines.append(f"| {k} | {cells} |")
    totals = " | ".join(f"**{sum(disk[s].values()) / 1e3:,.1f}**" for s in sizes)
    lines.append(f"| **total** | {totals} |")
    return "\n".join(lines)


def fi_markdown(estimate: dict) -> str:
    lines = [
        "| stage | formula at demo settings, KB/video | measured demo, KB/video "
        "| FI, KB/video | FI, 10,000 videos, GB |",
        "|---|---|---|---|---|",
    ]
    for stage, e in estimate["per_video"].items():
        lines.append(
            f"| {stage} | {e['demo_formula'] / 1e3:,.1f} | {e['demo_measured'] / 1e3:,.1f} "
            f"| {e['fi_per_video'] / 1e3:,.1f} | {e['fi_10000_videos_gb']:,.1f} |"
        )
    for name, e in estimate["fixed"].items():
        lines.append(
            f"| {name} (fixed) | {e['demo_formula'] / 1e3:,.1f} in all | | | {e['fi_gb']:,.2f} |"
        )
    total = sum(e["fi_10000_videos_gb"] for e in estimate["per_video"].values())
    total += sum(e["fi_gb"] for e in estimate["fixed"].values())
    lines.append(f"| **total** | | | | **{total:,.1f}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 192])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/traitlens_bench_memory"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--json", type=Path, default=REPO / "bench/results/bench_memory.json")
    parser.add_argument("--no-run", action="store_true", help="tabulate existing folders")
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    load_before = os.getloadavg()
    patterns = benchmark_patterns()
    jobs, peaks, disk, wall, shards = {}, {}, {}, {}, {}
    for size in sizes:
        folder = args.workdir / f"n{size}"
        config = bench_config(size)
        if not args.no_run:
            if (folder / "results").exists():
                sys.exit(f"{folder}/results exists: remove it, or tabulate it with --no-run")
            print(f"running the workflow on {size} demo videos in {folder} ...", file=sys.stderr)
            wall[size] = run_workflow(folder, config, args.cores)
            print(f"  {wall[size]:.0f} s", file=sys.stderr)
        elif (folder / "wall_seconds.txt").exists():
            wall[size] = float((folder / "wall_seconds.txt").read_text())
        jobs[size] = read_jobs(folder / "results" / NAME, patterns)
        peaks[size] = read_peaks(folder / "peaks.jsonl")
        manifest = pd.read_csv(folder / "results" / NAME / "manifest.tsv", sep="\t")
        per_shard = manifest.groupby("shard").size().astype(int).tolist()
        shards[size] = {"shards": len(per_shard), "videos": [min(per_shard), max(per_shard)]}
        disk[size] = disk_per_video(folder, size)
    table = per_job_table(jobs, peaks)
    estimate = fi_estimate(disk[sizes[-1]], bench_config(sizes[-1]))
    print(markdown(table, sizes))
    print()
    print(disk_markdown(disk))
    print()
    print(fi_markdown(estimate))
    report = {
        "machine": cpu_name(),
        "load_before": load_before,
        "sizes": sizes,
        "cores": args.cores,
        "wall_seconds": wall,
        "videos_per_shard": shards,
        "settings": {k: bench_config(sizes[0])[k] for k in ("extract", "faces", "activations")},
        "jobs": {s: jobs[s].to_dict(orient="records") for s in sizes},
        "table": table.reset_index(names="job").to_dict(orient="records"),
        "disk_bytes_per_video": disk,
        "first_impressions_estimate": estimate,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str))
    print(f"videos per shard {shards}", file=sys.stderr)
    print(f"wall seconds {wall}; JSON in {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
