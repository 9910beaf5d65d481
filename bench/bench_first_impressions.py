"""Benchmark: config/first_impressions.yaml on full-size clips, stage by stage.

Steps (``--steps``, default all, in this order; each reads what the earlier ones left in
``--workdir``, so they can run one at a time):

  sample  ``--clips`` clips of 15 s at 1280x720, 30 fps, H.264 + AAC from the demo
          generator, named, foldered and labelled as First Impressions
          (tests/support/first_impressions_sample.py), plus one labelled clip cut in half;
          a VGG-Face state dict of random filters (``conv1_1.weight`` ...)
  run     ``snakemake --cores N`` (the default target, as a user runs it; ``--omit``
          leaves rules out, with what depends on them) with
          config/first_impressions.yaml and a second config that points its paths at the
          sample and changes only the epochs (1) and ``models.visual.weights``; then
          ``snakemake --report``. Every job's benchmark file (seconds, sampled max RSS,
          io) and its exact peak RSS (bench/bench_memory.py's hook) are kept
  shard   the per-shard stages again with every clip in one shard (``sharding.n_shards:
          1``, a measurement setting: First Impressions' shards hold ~78 clips, the
          run's 1-2, so the run's shard jobs are mostly start-up): extraction, faces and
          AUs per clip and per frame with one start-up amortised
  au      the computation of the ``find_au_detectors`` rule (the table with its
          cluster-aware verdict, both permutation nulls, the verdict's null) at First
          Impressions' shape with the config's settings, on the synthetic clustered data
          of bench/emergence_permutation.py (100,000 frames x 2,048 units)
  scale   the aggregate CPU jobs whose work grows with the frames (cam_face_overlap,
          build_face_template), timed in this process on the run's files given REPEAT
          times over
  table   per-stage figures and the projection to the corpus on a 16-core node with one
          GPU (Markdown on stdout, JSON in ``--json``)

Command (repository root; the sample takes ~1 min of CPU per clip). ``--omit
find_au_detectors``: below 1,000 frames the config's n_top 1000 makes that job cost
frames x units per permutation (12 min for its table alone at 20 clips); step ``au``
measures it at the corpus' shape instead (bench/README.md):
  .venv/bin/python bench/bench_first_impressions.py --clips 20 --identities 6 \
      --omit find_au_detectors
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

from bench_memory import (  # noqa: E402
    PEAK_HOOK,
    benchmark_patterns,
    folder_bytes,
    job_key,
    read_peaks,
)
from machine import cpu_name  # noqa: E402

from support.first_impressions_sample import (  # noqa: E402
    SHIPPED_CONFIG,
    make_sample,
    overrides,
    vgg_face_state_dict,
)
from support.workflow import write_config  # noqa: E402

NAME = "first_impressions"
ONE_SHARD = "fi_one_shard"
STEPS = ("sample", "run", "shard", "au", "scale", "table")
REPEAT = 10  # the scale step's inputs, given this many times over
TRAITS = 5  # a CAM map per trait
SHARD_RULES = ("extract_shard", "detect_faces", "estimate_aus")


def snakemake(folder: Path, configs: list[Path], cores: int, *args: str, log: str) -> float:
    """Run the repository's workflow in ``folder``, every job's peak RSS logged to
    ``folder/peaks.jsonl``; wall seconds. Stops the bench when it fails."""
    hook = folder / "peak_hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(PEAK_HOOK)
    env = dict(os.environ, TRAITLENS_PEAK_LOG=str(folder / "peaks.jsonl"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    command = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(folder),
        "--configfile", *map(str, configs),
        "--cores", str(cores),
        *args,
    ]  # fmt: skip
    start = time.perf_counter()
    with open(folder / log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"snakemake failed in {folder} (exit {done.returncode}); see {folder / log}")
    return seconds


def effective_config(configs: list[Path]) -> dict:
    """The config the rules see: the files merged in order, the schema's defaults filled."""
    from snakemake.utils import update_config, validate

    config: dict = {}
    for path in configs:
        update_config(config, yaml.safe_load(path.read_text()))
    validate(config, str(REPO / "schemas/config.schema.yaml"), set_default=True)
    return config


# --- steps -----------------------------------------------------------------------------


def step_sample(args, state: dict) -> None:
    data = args.workdir / "data"
    start = time.perf_counter()
    sample = make_sample(data, args.clips, args.identities, threads=args.cores)
    seconds = time.perf_counter() - start
    weights = vgg_face_state_dict(data / "vgg_face_dag.pth")
    configs = [SHIPPED_CONFIG, overrides(sample, weights)]
    state["sample"] = {
        "clips": args.clips,
        "identities": args.identities,
        "labelled_files": len(sample.video_ids),
        "truncated": sample.truncated,
        "generation_s": round(seconds, 1),
        "video_bytes": folder_bytes(sample.videos),
        "configs": [str(c) for c in configs],
    }


def step_run(args, state: dict) -> None:
    folder = args.workdir / "run"
    configs = [Path(c) for c in state["sample"]["configs"]]
    omit = [a for rule in args.omit for a in ("--omit-from", rule)]
    wall = snakemake(folder, configs, args.cores, *omit, log="snakemake.log")
    report = folder / "results" / NAME / "report.html"
    report_s = snakemake(
        folder, configs, args.cores, *omit, "--report", str(report), log="report.log"
    )
    state["run"] = {"wall_s": round(wall, 1), "report_s": round(report_s, 1), "omit": args.omit}


def step_shard(args, state: dict) -> None:
    folder = args.workdir / "one_shard"
    folder.mkdir(parents=True, exist_ok=True)
    one = write_config(
        folder / "one_shard.yaml", {"dataset": {"name": ONE_SHARD}, "sharding": {"n_shards": 1}}
    )
    configs = [*(Path(c) for c in state["sample"]["configs"]), one]
    target = f"results/{ONE_SHARD}/aus/s000.tsv"
    wall = snakemake(folder, configs, args.cores, target, log="snakemake.log")
    state["shard"] = {"wall_s": round(wall, 1)}


def step_au(args, state: dict) -> None:
    """find_au_detectors' computation, as interpret/rules.py runs it, at FI's shape."""
    import resource

    from emergence_permutation import synthetic

    from traitlens.interpret.au_emergence import (
        cluster_null_rates,
        emergence_table,
        null_table,
        top_n_masks,
    )

    cfg = effective_config([Path(c) for c in state["sample"]["configs"]])["analysis"]
    cfg = cfg["au_emergence"]
    shape = argparse.Namespace(
        videos=10_000, frames_per_video=10, groups=3_060, drop=0.02, units=2_048, aus=17, seed=0
    )
    au, units, videos, groups, frame_index = synthetic(shape)
    labels = [("conv5_3", j) for j in range(units.shape[1])]
    names = [f"AU{a:02d}" for a in range(shape.aus)]
    n_top, alpha, n_perm, seed = cfg["n_top"], cfg["alpha"], cfg["n_permutations"], cfg["seed"]
    seconds = {}
    t = time.perf_counter()
    masks = top_n_masks(au, units, n_top, seed)
    seconds["masks"] = time.perf_counter() - t
    t = time.perf_counter()
    emergence_table(
        au, units, labels, names, n_top, seed, masks, videos=videos, groups=groups,
        frame_order=frame_index, n_perm=cfg["cluster_permutations"], alpha=alpha,
    )  # fmt: skip
    seconds["table with the cluster-aware verdict"] = time.perf_counter() - t
    t = time.perf_counter()
    null_table(au, units, names, n_top, alpha, n_perm, seed, masks=masks, progress=False)
    null_table(
        au, units, names, n_top, alpha, n_perm, seed, groups=videos, masks=masks, progress=False
    )
    seconds["permutation nulls (all frames, within videos)"] = time.perf_counter() - t
    t = time.perf_counter()
    cluster_null_rates(
        au, units, names, n_top, alpha, cfg["cluster_null_draws"], n_perm, seed,
        videos=videos, groups=groups, frame_order=frame_index, masks=masks,
    )  # fmt: skip
    seconds["the verdict's null"] = time.perf_counter() - t
    state["au"] = {
        "frames": int(units.shape[0]),
        "units": int(units.shape[1]),
        "settings": {
            k: cfg[k]
            for k in ("n_top", "n_permutations", "cluster_permutations", "cluster_null_draws")
        },  # fmt: skip
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "total_s": round(sum(seconds.values()), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def step_scale(args, state: dict) -> None:
    """Per-frame costs of the two aggregate CPU jobs whose work grows with the frames,
    timed in this process on the run's own files given ``REPEAT`` times over, so that
    their fixed costs (imports, the figure) weigh little."""
    import tempfile

    from traitlens.faces.face_template import build_face_template
    from traitlens.interpret.cam_face_overlap import face_overlap_table

    results = args.workdir / "run" / "results" / NAME
    config = effective_config([Path(c) for c in state["sample"]["configs"]])
    faces = sorted(str(p) for p in (results / "faces").glob("s*.h5"))
    frames = sorted(str(p) for p in (results / "frames").glob("*.h5"))
    cams = [str(results / "cam" / f"{source}.h5") for source in ("img", "img_gradcam")]
    out = {}
    t = time.perf_counter()
    table = face_overlap_table(cams * REPEAT, faces, frames, config["analysis"]["cam"]["threshold"])
    seconds = time.perf_counter() - t
    # a row per map: one per source, frame and trait
    out["cam_face_overlap"] = {"maps": len(table), "seconds": round(seconds, 2),
                               "s_per_map": seconds / len(table)}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build_face_template(
            faces * REPEAT, template_out=Path(tmp) / "template.h5",
            figure_out=Path(tmp) / "regions.png",
            dilation_px=config["faces"]["region_dilation_px"],
        )  # fmt: skip
        seconds = time.perf_counter() - t
    n = REPEAT * counts(args.workdir / "run", NAME)["frames"]
    out["build_face_template"] = {"frames": n, "seconds": round(seconds, 2),
                                  "s_per_frame": seconds / n}  # fmt: skip
    state["scale"] = out


# --- tabulating ------------------------------------------------------------------------


def job_threads(log_text: str) -> dict[str, int]:
    """Threads of every job by its benchmark file, from Snakemake's job blocks."""
    out = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log_text):
        bench = re.search(r"\n\s+benchmark: (\S+)", block)
        if bench:
            threads = re.search(r"\n\s+threads: (\d+)", block)
            out[bench.group(1)] = int(threads.group(1)) if threads else 1
    return out


def read_jobs(folder: Path, name: str) -> pd.DataFrame:
    """One row per job: rule, key (rule[wildcards but the shard]), seconds, threads,
    max_rss (sampled, MB), io_out (MB), peak_mb (exact VmHWM of the job's Python)."""
    results = folder / "results" / name
    threads = job_threads((folder / "snakemake.log").read_text())
    patterns = benchmark_patterns()
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        rel = path.relative_to(results / "benchmarks").as_posix()
        rule, match = next((r, m) for r, p in patterns if (m := p.match(rel)))
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append(
            {
                "rule": rule,
                "job": job_key(rule, match.groupdict()),
                "seconds": float(record["s"]),
                "threads": threads[f"results/{name}/benchmarks/{rel}"],
                "max_rss": float(record["max_rss"]),
                "io_out": float(record["io_out"]),
            }
        )
    jobs = pd.DataFrame(rows)
    peaks = read_peaks(folder / "peaks.jsonl").groupby("job")["peak_mb"].max()
    jobs["peak_mb"] = jobs["job"].map(peaks)
    return jobs


def counts(folder: Path, name: str) -> dict:
    """Clips read and failed (the shards' QC), frames, and frames per split (when the run
    built the manifest)."""
    import h5py

    results = folder / "results" / name
    qc = pd.concat(
        [pd.read_csv(p, sep="\t", dtype={"video_id": str}) for p in results.glob("qc/shards/*.tsv")]
    )
    manifest = results / "manifest.tsv"
    split_of = (
        pd.read_csv(manifest, sep="\t", dtype={"video_id": str}).set_index("video_id")["split"]
        if manifest.exists()
        else None
    )
    frames, per_split = 0, {}
    for path in (results / "frames").glob("*.h5"):
        with h5py.File(path) as f:
            ids = f["video_id"].asstr()[()]
            rows = f["video_index"][()]
        frames += len(rows)
        for row in rows if split_of is not None else ():
            split = split_of[ids[row]]
            per_split[split] = per_split.get(split, 0) + 1
    return {
        "clips_ok": int((qc["status"] == "ok").sum()),
        "clips_failed": int((qc["status"] != "ok").sum()),
        "frames": frames,
        "frames_per_split": per_split,
    }


def stage_rows(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per job key: jobs, seconds (sum), core-seconds (seconds x threads, summed), the
    largest sampled and exact peak RSS, MB written."""
    jobs = jobs.assign(core_s=jobs["seconds"] * jobs["threads"])
    g = jobs.groupby("job", sort=False)
    return pd.DataFrame(
        {
            "rule": g["rule"].first(),
            "jobs": g.size(),
            "seconds": g["seconds"].sum(),
            "threads": g["threads"].max(),
            "core_s": g["core_s"].sum(),
            "max_rss_mb": g["max_rss"].max(),
            "peak_mb": g["peak_mb"].max(),
            "io_out_mb": g["io_out"].sum(),
        }
    )


def training_rates(folder: Path, name: str) -> dict[str, float]:
    """Training images/s of each CNN, from its training log (epoch 1)."""
    out = {}
    for log in sorted((folder / "results" / name / "models").glob("*/training_log.tsv")):
        out[log.parent.name] = float(pd.read_csv(log, sep="\t")["images_per_s"].iloc[0])
    return out


def disk_per_clip(folder: Path, name: str, clips: int) -> dict[str, float]:
    results = folder / "results" / name
    out = {}
    for entry in sorted(results.iterdir()):
        key = "top-level files" if entry.is_file() else entry.name
        out[key] = out.get(key, 0.0) + folder_bytes(entry) / clips
    return out


def step_table(args, state: dict) -> None:
    run, shard = args.workdir / "run", args.workdir / "one_shard"
    jobs = stage_rows(read_jobs(run, NAME))
    one = stage_rows(read_jobs(shard, ONE_SHARD))
    n_run, n_one = counts(run, NAME), counts(shard, ONE_SHARD)
    state["table"] = {
        "machine": cpu_name(),
        "load_average": os.getloadavg(),
        "counts": n_run,
        "one_shard_counts": n_one,
        "jobs": jobs.reset_index().to_dict("records"),
        "one_shard_jobs": one.reset_index().to_dict("records"),
        "training_images_per_s": training_rates(run, NAME),
        "disk_per_clip_bytes": disk_per_clip(run, NAME, n_run["clips_ok"]),
        "video_bytes_per_clip": state["sample"]["video_bytes"] / state["sample"]["labelled_files"],
    }
    state["projection"] = projection(state)
    print(markdown(state))


# --- the projection to the corpus ------------------------------------------------------

CORPUS_CLIPS = 10_000
FRAMES_PER_CLIP = 10
SPLIT_SHARE = {"train": 0.6, "validation": 0.2, "test": 0.2}
NODE_CORES = 16
EPOCHS = 10  # the schema's default, which config/first_impressions.yaml keeps
# GPU figures measured on a lent H100 (bench/README.md, "Model training": the paper's VGG16
# at 224, bfloat16, train_visual itself: its second epoch; predict_visual)
H100 = REPO / "bench/results/gpu_models_check_h100.json"
# bench/README.md, "Analyses at 100,000 frames x 512 units": the whole find_detectors call
# for one layer of 100,000 frames x 512 units (the rule runs 4 layers)
FIND_DETECTORS_LAYER_S = 2.31
# bench/README.md, "Activation dumps": dump / forward pass alone (CPU; no GPU measurement)
DUMP_OVER_FORWARD = 1.11
GPU_RULES = ("train_visual", "predict_visual", "dump_activations", "compute_cam")
# Jobs whose work the config fixes, not the corpus (their seconds at 20 clips stand)
FIXED_WORK = {
    "plot_cam": "fixed work: analysis.cam.n_frames (20) frames per trait and source",
    "plot_unit_segmentation": "fixed work: 8 units x 8 images per layer",
    "plot_comparisons": "fixed work: one figure of the accuracy table",
}
# Jobs over per-clip tables that were not measured at the corpus' size (about a second
# each at 20 clips); named under the projection, not in its total
NOT_PROJECTED = (
    "build_manifest", "summarise_qc", "report_qc", "train_linear_model",
    "fuse_predictions", "evaluate_models", "plot_emergence_null",
)  # fmt: skip


def projection(state: dict) -> list[dict]:
    """Wall time per stage for the corpus on a node of NODE_CORES cores and one GPU, each
    from a measured figure; the rows say which and what is assumed."""
    t = state["table"]
    clips = t["one_shard_counts"]["clips_ok"]
    one = {r["rule"]: r for r in t["one_shard_jobs"]}
    frames = CORPUS_CLIPS * FRAMES_PER_CLIP
    split = {s: frames * share for s, share in SPLIT_SHARE.items()}
    rows = []
    for rule in SHARD_RULES:
        per_clip = one[rule]["core_s"] / clips
        rows.append({
            "stage": rule, "figure": f"{per_clip:.3f} core-s per clip",
            "source": f"one shard of {clips} clips (this bench)",
            "assumes": f"128 independent shards over {NODE_CORES} cores, linear",
            "wall_s": per_clip * CORPUS_CLIPS / NODE_CORES, "phase": "shards",
        })  # fmt: skip
    gpu = json.loads(H100.read_text())["workflow_training"]
    train_rate, predict_rate = gpu["epochs"][-1]["images_per_s"], gpu["predict_images_per_s"]
    models = 4
    train_images = models * EPOCHS * split["train"]
    val_images = models * EPOCHS * split["validation"]
    cam_images = 2 * split["test"]
    gpu_rows = [
        ("train_visual (4 CNNs, 10 epochs, with validation)",
         train_images / train_rate + val_images / predict_rate,
         f"train {train_rate:.0f}, predict {predict_rate:.0f} images/s", "measured"),
        ("predict_visual (img, face)", 2 * frames / predict_rate,
         f"{predict_rate:.0f} images/s", "measured"),
        ("dump_activations (face, 4 layers)", frames / predict_rate * DUMP_OVER_FORWARD,
         f"{predict_rate:.0f} images/s x {DUMP_OVER_FORWARD}", "not measured on a GPU"),
        ("compute_cam (img, face: CAM; img_gradcam)", cam_images / predict_rate
         + split["test"] / train_rate, "CAM at the predict rate, Grad-CAM at the train rate",
         "not measured on a GPU"),
    ]  # fmt: skip
    for stage, wall, figure, status in gpu_rows:
        rows.append({
            "stage": stage, "figure": figure, "wall_s": wall,
            "source": f"H100 (bench/README.md, Model training); {status}",
            "assumes": "one GPU, jobs one after another", "phase": "gpu",
        })  # fmt: skip
    cpu_rate = sum(t["training_images_per_s"].values()) / len(t["training_images_per_s"])
    rows.append({
        "stage": "train_visual without a GPU (for comparison, not in the total)",
        "figure": f"{cpu_rate:.2f} images/s on 2 cores",
        "source": "training logs (this bench)",
        "assumes": f"x {NODE_CORES // 2} for {NODE_CORES} cores (linear: optimistic); "
        "validation images priced as training ones",
        "wall_s": (train_images + val_images) / (cpu_rate * NODE_CORES / 2),
        "in_total": False, "phase": "gpu",
    })  # fmt: skip
    rows.append({
        "stage": "find_au_detectors", "figure": f"{state['au']['total_s']:.0f} s",
        "source": "its computation at FI's shape (this bench, step au)",
        "assumes": "one core", "wall_s": state["au"]["total_s"], "phase": "after",
    })  # fmt: skip
    rows.append({
        "stage": "find_detectors", "figure": f"{FIND_DETECTORS_LAYER_S} s per layer",
        "source": "bench/README.md, Analyses at 100,000 frames x 512 units",
        "assumes": "4 layers", "wall_s": 4 * FIND_DETECTORS_LAYER_S, "phase": "after",
    })  # fmt: skip
    scale = state["scale"]
    per_map, per_frame = scale["cam_face_overlap"], scale["build_face_template"]
    rows.append({
        "stage": "cam_face_overlap (img, img_gradcam)",
        "figure": f"{per_map['s_per_map'] * 1e3:.1f} ms per map (frame x trait)",
        "source": f"{per_map['maps']} maps of the run, in process (this bench, step scale)",
        "assumes": "linear in the test frames, one core",
        "wall_s": per_map["s_per_map"] * 2 * split["test"] * TRAITS, "phase": "after",
    })  # fmt: skip
    rows.append({
        "stage": "build_face_template",
        "figure": f"{per_frame['s_per_frame'] * 1e3:.1f} ms per frame",
        "source": f"{per_frame['frames']} frames of the run, in process (this bench, step scale)",
        "assumes": "linear in the frames, one core",
        "wall_s": per_frame["s_per_frame"] * frames, "phase": "beside the GPU",
    })  # fmt: skip
    by_rule: dict[str, float] = {}
    for r in t["jobs"]:
        if r["rule"] in FIXED_WORK:
            by_rule[r["rule"]] = by_rule.get(r["rule"], 0.0) + r["seconds"]
    for rule, seconds in by_rule.items():
        rows.append({
            "stage": rule, "figure": f"{seconds:.0f} s", "source": "the run (this bench)",
            "assumes": FIXED_WORK[rule], "wall_s": seconds, "phase": "after",
        })  # fmt: skip
    rows.append({
        "stage": "snakemake --report", "figure": f"{state['run']['report_s']:.0f} s",
        "source": f"{t['counts']['clips_ok']} clips (this bench)",
        "assumes": "as measured (the report embeds fixed figures; its tables grow)",
        "wall_s": state["run"]["report_s"], "phase": "report",
    })  # fmt: skip
    return rows


def critical_path(rows: list[dict]) -> float:
    """Wall time when jobs that do not wait for one another run side by side: the shards,
    then the GPU jobs (the face template beside them on the CPU), then the longest of the
    analyses (each its own core), then the report."""
    counted = [r for r in rows if r.get("in_total", True)]

    def phase(name: str) -> list[float]:
        return [r["wall_s"] for r in counted if r["phase"] == name]

    return (
        sum(phase("shards"))
        + max(sum(phase("gpu")), max(phase("beside the GPU"), default=0.0))
        + max(phase("after"), default=0.0)
        + sum(phase("report"))
    )


def markdown(state: dict) -> str:
    t = state["table"]
    lines = [
        f"run: {state['run']['wall_s']} s wall, report {state['run']['report_s']} s; "
        f"{t['counts']['clips_ok']} clips ok, {t['counts']['clips_failed']} failed, "
        f"{t['counts']['frames']} frames ({t['counts']['frames_per_split']})",
        "",
        "| job | jobs | threads | seconds | core-s | max RSS MB (sampled) | peak MB | written MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in t["jobs"]:
        lines.append(
            f"| {r['job']} | {r['jobs']} | {r['threads']} | {r['seconds']:.1f} "
            f"| {r['core_s']:.1f} | {r['max_rss_mb']:.0f} | {r['peak_mb']:.0f} "
            f"| {r['io_out_mb']:.1f} |"
        )
    clips, frames = t["one_shard_counts"]["clips_ok"], t["one_shard_counts"]["frames"]
    lines += ["", f"one shard of {clips} clips ({frames} frames):", ""]
    lines += ["| job | seconds | core-s | clips/s per core | frames/s per core | peak MB |"]
    lines += ["|---|---|---|---|---|---|"]
    for r in t["one_shard_jobs"]:
        if r["rule"] in SHARD_RULES:
            lines.append(
                f"| {r['job']} | {r['seconds']:.1f} | {r['core_s']:.1f} "
                f"| {clips / r['core_s']:.2f} | {frames / r['core_s']:.1f} "
                f"| {r['peak_mb']:.0f} |"
            )
    lines += ["", f"training images/s (epoch 1): {t['training_images_per_s']}"]
    disk = {k: round(v / 1e3, 1) for k, v in t["disk_per_clip_bytes"].items()}
    lines += [f"disk per clip, KB: {disk}; input video {t['video_bytes_per_clip'] / 1e3:.0f} KB"]
    if "au" in state:
        lines += [f"find_au_detectors' computation at FI's shape: {state['au']}"]
    lines += [
        "",
        "| stage | figure | source | assumes | projected wall s |",
        "|---|---|---|---|---|",
    ]
    total = 0.0
    for r in state.get("projection", []):
        lines.append(
            f"| {r['stage']} | {r['figure']} | {r['source']} | {r['assumes']} "
            f"| {r['wall_s']:,.0f} |"
        )
        total += r["wall_s"] if r.get("in_total", True) else 0.0
    lines.append(
        f"| **total, one stage after another** | | | | **{total:,.0f}** ({total / 3600:.2f} h) |"
    )
    path = critical_path(state.get("projection", []))
    lines.append(
        f"| **total, independent jobs side by side** | | | | **{path:,.0f}** "
        f"({path / 3600:.2f} h) |"
    )
    seconds: dict[str, float] = {}
    for r in state["table"]["jobs"]:
        if r["rule"] in NOT_PROJECTED:
            seconds[r["job"]] = r["seconds"]
    lines.append(
        "not measured at the corpus' size (not in the total), seconds at "
        f"{state['table']['counts']['clips_ok']} clips: "
        + ", ".join(f"{job} {sec:.1f}" for job, sec in seconds.items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--identities", type=int, default=6)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/traitlens_bench_fi"))
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument(
        "--omit",
        nargs="*",
        default=[],
        help="rules left out of the run with what depends on them (snakemake --omit-from)",
    )
    parser.add_argument(
        "--json", type=Path, default=REPO / "bench/results/bench_first_impressions.json"
    )
    args = parser.parse_args()
    state_file = args.workdir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    args.workdir.mkdir(parents=True, exist_ok=True)
    for step in STEPS:
        if step in args.steps:
            print(f"[{time.strftime('%H:%M:%S')}] {step}", file=sys.stderr, flush=True)
            globals()[f"step_{step}"](args, state)
            state_file.write_text(json.dumps(state, indent=1, default=str))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(state, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
