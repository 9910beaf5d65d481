"""Accuracy across training seeds: one visual model trained with several seeds on a run's
shard files, each scored on validation and test against the train-mean baseline.

A single demo run's image-model figure moves by several hundredths with the training
seed (and with the torch thread count), so a change to the model, its settings or the
demo data is judged here over several seeds, never on one run.

Each seed trains exactly as the train_visual rule does (``visual_model.train_visual``
with the config's ``train`` and ``models.visual`` + ``models.<model>`` settings, ``--set``
overriding any of them), except that the per-epoch validation pass is skipped (it does
not change the weights, only the log). Then ``predict_visual`` scores the validation and
test videos. "ratio" is the model's MAE over the train-mean baseline's MAE on the same
videos (the issue's goal for a visual model on the demo: <= 0.70 on test); "spread" is
the sd of the per-video predictions over the sd of the truth, averaged over the five
traits (near 0: a run stuck at the mean).

Needs a finished run up to the shard files (frames/ for img models, faces/ for face
models) and manifest.tsv, e.g. after ``.venv/bin/snakemake --cores 2``. Command
(repository root), about 5 min per seed for the demo's img model on 1 core:

  .venv/bin/python bench/seed_spread.py --model img --seeds 0 1 2 3 --threads 1

Two seeds run side by side with ``--parallel 2`` (each with ``--threads`` threads).
Checkpoints and predictions go to a temporary folder unless ``--keep DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow_scripts"))

from traitlens.evaluation.metrics import mean_accuracy  # noqa: E402
from traitlens.ingest.labels import BIG_FIVE  # noqa: E402
from traitlens.models.dan import DanConfig  # noqa: E402
from traitlens.models.predictions import read_labels  # noqa: E402
from traitlens.models.train import TrainConfig  # noqa: E402
from traitlens.models.visual_model import RunConfig, predict_visual, train_visual  # noqa: E402

SHARD_FOLDER = {"img": "frames", "face": "faces"}


def model_settings(config: dict, model: str, overrides: list[str]) -> dict:
    """models.visual + models.<model> + ``key=json`` overrides."""
    if model not in config["models"]:
        raise SystemExit(f"models.{model} is not in the config")
    settings = {**config["models"]["visual"], **config["models"][model]}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value (value in JSON)")
        settings[key] = json.loads(value)
    return settings


def score(videos, truth, baseline: np.ndarray) -> dict:
    """ratio (model MAE / train-mean MAE) and prediction spread per split."""
    out = {}
    for split in ("validation", "test"):
        v = videos[videos["split"] == split].set_index("video_id")
        if v.empty:
            continue
        t = truth.loc[v.index, list(BIG_FIVE)].to_numpy(float)
        pred = v[list(BIG_FIVE)].to_numpy(float)
        # MAE as the accuracy table computes it (1 - mean accuracy)
        out[f"{split}_mae"] = 1.0 - mean_accuracy(pred, t)
        base_mae = 1.0 - mean_accuracy(np.broadcast_to(baseline, t.shape), t)
        out[f"{split}_ratio"] = out[f"{split}_mae"] / base_mae
        out[f"{split}_spread"] = float((pred.std(axis=0) / t.std(axis=0)).mean())
    return out


def run_seed(args: argparse.Namespace, seed: int, work: Path) -> dict:
    config = yaml.safe_load(args.config.read_text())
    settings = {**model_settings(config, args.model, args.set), "seed": seed}
    kind = "face" if args.model.startswith("face") else "img"
    shards = sorted(str(p) for p in (args.results / SHARD_FOLDER[kind]).glob("s*.h5"))
    if not shards:
        raise SystemExit(
            f"no shard files in {args.results / SHARD_FOLDER[kind]}: run the workflow first"
        )
    labels = read_labels(args.results / "manifest.tsv")
    truth = labels.set_index("video_id")
    baseline = truth.loc[truth["split"] == "train", list(BIG_FIVE)].to_numpy(float).mean(axis=0)
    run = RunConfig.from_mapping({**config["train"], "threads": args.threads})
    # validation renamed: train_visual then skips its per-epoch pass (weights unchanged)
    unmonitored = labels.assign(split=labels["split"].replace({"validation": "held_out"}))
    t0 = time.perf_counter()
    model, history = train_visual(
        kind=kind,
        data_paths=shards,
        labels=unmonitored,
        dan=DanConfig.from_mapping(settings),
        train_cfg=TrainConfig.from_mapping(settings),
        weights=settings.get("weights"),
        run=run,
        checkpoints=work / f"seed{seed}" / "checkpoints",
    )
    train_s = time.perf_counter() - t0
    scored = labels[labels["split"].isin(["validation", "test"])]
    _, videos = predict_visual(
        model, kind, shards, scored, config["train"]["predict_batch_size"], run
    )
    videos.to_csv(work / f"seed{seed}" / "predictions.tsv", sep="\t", index=False)
    return {
        "seed": seed,
        **score(videos, truth, baseline),
        "train_loss": history[-1]["train_loss"],
        "train_s": train_s,
    }


def summary_table(rows: list[dict]) -> str:
    lines = [
        "| seed | validation ratio | test ratio | test spread | final train loss | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r.get('validation_ratio', float('nan')):.3f} | "
            f"{r['test_ratio']:.3f} | {r['test_spread']:.2f} | {r['train_loss']:.4f} | "
            f"{r['train_s']:.0f} |"
        )
    test = np.array([r["test_ratio"] for r in rows])
    sd = test.std(ddof=1) if len(test) > 1 else float("nan")
    lines.append(
        f"\ntest ratio over {len(test)} seeds: mean {test.mean():.3f}, sd {sd:.3f}, "
        f"range {test.min():.3f}-{test.max():.3f}"
    )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "demo")
    ap.add_argument("--model", default="img", help="a models.<model> entry: img, face, ...")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    ap.add_argument("--parallel", type=int, default=1, help="seeds trained side by side")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--keep", type=Path, help="keep checkpoints and predictions here")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    return ap.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="seed_spread_") as tmp:
        work = args.keep or Path(tmp)
        with ProcessPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            rows = list(
                pool.map(run_seed, [args] * len(args.seeds), args.seeds, [work] * len(args.seeds))
            )
    print(f"{args.model} ({' '.join(args.set) or 'config settings'}), {args.results}")
    print(summary_table(rows))
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "set": args.set, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
