"""Visual-model training (traitlens.models: train, train_data, visual_model).

Tiny shard files shaped like the real ``frames/<shard>.h5`` and ``faces/<shard>.h5`` are
written in tmp_path. Checks: a planted trait is learned (held-out MAE far below the
train-mean baseline), a run killed by SIGKILL mid-training resumes from its checkpoint and
ends with bit-identical weights (augmentation on), checkpoints of other settings are
ignored, the epoch plan is seeded and complete, its augmentation (random resized crops,
brightness/contrast jitter) is seeded, bounded and leaves the plan as it was when off, the
sample index and pixel reader, the weights file round-trip and the refusals (bad weights
file, bad augmentation settings, CUDA requested without a GPU).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.models.dan import DanConfig, DanPlus
from traitlens.models.pixel_reader import PixelReader
from traitlens.models.train import TrainConfig, load_last_checkpoint, resolve_device
from traitlens.models.train_data import (
    Augmentation,
    BatchDataset,
    build_index,
    crop_boxes,
    crop_resize_batch,
    epoch_plan,
    jitter_batch,
    resize_batch,
    sequential_plan,
)
from traitlens.models.visual_model import (
    RunConfig,
    load_trained,
    predict_visual,
    save_weights,
    train_visual,
)

from support.workflow import REPO

TINY = DanConfig(width_divisor=16, batch_norm=True, input_size=32, input_scale=1 / 64)
CPU = RunConfig(device="cpu", amp=False, num_workers=0, threads=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- tiny shard files ------------------------------------------------------------------


def write_shard(
    path: Path,
    kind: str,
    video_ids: list[str],
    pixels: np.ndarray,
    video_index: np.ndarray,
    frame_index: np.ndarray,
    success: np.ndarray | None = None,
) -> Path:
    """A frames (kind "img") or faces (kind "face") shard file with the real datasets."""
    dataset = {"img": "frames", "face": "aligned"}[kind]
    n, h, w, _ = pixels.shape
    with h5py.File(path, "w") as f:
        f.create_dataset(dataset, data=pixels.astype(np.uint8), chunks=(1, h, w, 3) if n else None)
        f.create_dataset("video_index", data=np.asarray(video_index, dtype=np.int32))
        f.create_dataset("frame_index", data=np.asarray(frame_index, dtype=np.int32))
        f.create_dataset(
            "video_id", data=np.array(video_ids, dtype=object), dtype=h5py.string_dtype()
        )
        if kind == "face":
            f.create_dataset("success", data=np.asarray(success, dtype=bool))
    return path


def planted_data(
    folder: Path,
    n_videos: int = 60,
    frames_per_video: int = 4,
    size: int = 48,
    seed: int = 0,
    splits: tuple[int, int, int] = (40, 10, 10),
) -> tuple[Path, pd.DataFrame]:
    """Frames whose central square's brightness encodes openness (the other traits are
    0.5 plus noise): one frames shard and the labels table (train/validation/test)."""
    rng = np.random.default_rng(seed)
    ids = [f"vid{i:03d}" for i in range(n_videos)]
    openness = rng.uniform(0.15, 0.85, n_videos)
    split = np.repeat(["train", "validation", "test"], splits)[:n_videos]
    labels = pd.DataFrame({"video_id": ids, "split": split, "openness": openness})
    for trait in BIG_FIVE[1:]:
        labels[trait] = 0.5 + rng.normal(0.0, 0.03, n_videos)
    labels = labels.loc[:, ["video_id", "split", *BIG_FIVE]]
    frames = rng.normal(110.0, 25.0, (n_videos, frames_per_video, size, size, 3))
    lo, hi = size * 3 // 10, size - size * 3 // 10  # centred: flips do not move it
    for i in range(n_videos):
        frames[i, :, lo:hi, lo:hi, :] = (
            30.0
            + 200.0 * openness[i]
            + rng.normal(0.0, 10.0, (frames_per_video, hi - lo, hi - lo, 3))
        )
    pixels = frames.clip(0, 255).astype(np.uint8).reshape(-1, size, size, 3)
    path = write_shard(
        folder / "shard_000.h5",
        "img",
        ids,
        pixels,
        np.repeat(np.arange(n_videos), frames_per_video),
        np.tile(np.arange(frames_per_video) * 15, n_videos),
    )
    return path, labels


# --- 1. a planted trait is learned -----------------------------------------------------


@pytest.mark.media
def test_planted_trait_is_learned(tmp_path):
    data, labels = planted_data(tmp_path)
    cfg = TrainConfig(
        epochs=8,
        batch_size=16,
        optimizer="adam",
        lr_start=3e-3,
        lr_end=3e-4,
        weight_decay=0.0,
        seed=0,
    )
    model, history = train_visual(
        "img", [str(data)], labels, TINY, cfg, None, CPU, tmp_path / "checkpoints"
    )
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    frames, videos = predict_visual(model, "img", [str(data)], labels, 64, CPU)
    assert len(frames) == 60 * 4 and len(videos) == 60
    assert set(videos["split"]) == {"train", "validation", "test"}
    merged = videos.merge(labels, on=["video_id", "split"], suffixes=("", "_true"))
    assert len(merged) == 60
    held = merged[merged["split"] != "train"]
    train_mean = labels.loc[labels["split"] == "train", "openness"].mean()
    baseline = np.abs(held["openness_true"] - train_mean).mean()
    mae = np.abs(held["openness"] - held["openness_true"]).mean()
    assert mae < 0.5 * baseline, (mae, baseline)
    # the history's validation MAE is the per-video MAE over all five traits
    val = merged[merged["split"] == "validation"]
    val_mae = np.abs(
        val[list(BIG_FIVE)].to_numpy() - val[[f"{t}_true" for t in BIG_FIVE]].to_numpy()
    ).mean()
    assert history[-1]["val_mae"] == pytest.approx(val_mae, abs=1e-5)


# --- 2. a killed run resumes to the same weights -----------------------------------------

TRAIN_SCRIPT = """
import logging
import sys
from pathlib import Path

sys.path.insert(0, {scripts!r})
import torch

from traitlens.models.dan import DanConfig
from traitlens.models.predictions import read_labels
from traitlens.models.train import TrainConfig
from traitlens.models.visual_model import RunConfig, save_weights, train_visual

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
torch.set_num_threads(1)
data, manifest, checkpoints, out = sys.argv[1:5]
augmentation = {augmentation!r}
dan = DanConfig(width_divisor=16, batch_norm=True, input_size=32, input_scale=1 / 64)
cfg = TrainConfig(epochs=4, batch_size=16, optimizer="adam", lr_start=3e-3, lr_end=3e-4,
                  weight_decay=1e-4, flip_p=0.5, seed=3, **augmentation)
run = RunConfig(device="cpu", amp=False, num_workers=0, threads=1)
model, history = train_visual("img", [data], read_labels(manifest), dan, cfg, None, run,
                              Path(checkpoints))
save_weights(model, "img", out)
"""


def _start(script: Path, data: Path, manifest: Path, folder: Path) -> subprocess.Popen:
    folder.mkdir()
    log = (folder / "train.log").open("w")
    args = [str(data), str(manifest), str(folder / "checkpoints"), str(folder / "weights.pt")]
    proc = subprocess.Popen(
        [sys.executable, str(script), *args], stdout=log, stderr=subprocess.STDOUT, cwd=folder
    )
    log.close()
    return proc


def _checkpoint_epochs(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_*.pt"))


# with augmentation on, the resumed epochs must also redraw the uninterrupted run's crops
# and jitter (without it the plan is the same but for them: one run covers both)
AUGMENTED = {"crop_scale": (0.6, 1.0), "crop_aspect": 1.25, "jitter": 0.2}


@pytest.mark.media
def test_killed_run_resumes_to_identical_weights(tmp_path):
    data, labels = planted_data(tmp_path, n_videos=60, splits=(50, 10, 0))
    manifest = tmp_path / "manifest.tsv"
    labels.assign(youtube_id="x").to_csv(manifest, sep="\t", index=False)  # extra column
    script = tmp_path / "train_job.py"
    script.write_text(
        TRAIN_SCRIPT.format(scripts=str(REPO / "workflow_scripts"), augmentation=AUGMENTED)
    )

    runs = {name: tmp_path / name for name in ("whole", "killed")}
    whole = _start(script, data, manifest, runs["whole"])
    killed = _start(script, data, manifest, runs["killed"])
    checkpoints = runs["killed"] / "checkpoints"
    try:
        deadline = time.monotonic() + 40
        while not any(e >= 2 for e in _checkpoint_epochs(checkpoints)):
            assert killed.poll() is None, "the run ended before its epoch-2 checkpoint"
            assert time.monotonic() < deadline, "no epoch-2 checkpoint within 40 s"
            time.sleep(0.005)
        killed.kill()  # SIGKILL: no clean-up in the job
        assert killed.wait(timeout=10) == -9
        assert whole.wait(timeout=60) == 0, (runs["whole"] / "train.log").read_text()
    finally:
        for proc in (whole, killed):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert not (runs["killed"] / "weights.pt").exists(), "killed after finishing"
    done = _checkpoint_epochs(checkpoints)
    # the newest checkpoint is kept (the one before it only in the instant of replacing)
    assert done and done[-1] in (2, 3), done
    first_log = (runs["killed"] / "train.log").read_text()
    assert "resuming" not in first_log

    log_path = runs["killed"] / "train.log"
    args = [str(data), str(manifest), str(checkpoints), str(runs["killed"] / "weights.pt")]
    with log_path.open("w") as log:
        rerun = subprocess.run(
            [sys.executable, str(script), *args], stdout=log, stderr=subprocess.STDOUT, timeout=60
        )
    resumed_log = log_path.read_text()
    assert rerun.returncode == 0, resumed_log
    assert f"resuming after epoch {done[-1]}" in resumed_log
    # only the epochs after the checkpoint were trained again
    trained = [int(m) for m in re.findall(r"traitlens\.models\.train epoch (\d+)/4", resumed_log)]
    assert trained == list(range(done[-1] + 1, 5)), trained
    whole_log = (runs["whole"] / "train.log").read_text()
    assert "resuming" not in whole_log
    assert re.findall(r"traitlens\.models\.train epoch (\d+)/4", whole_log) == ["1", "2", "3", "4"]

    a = torch.load(runs["whole"] / "weights.pt", map_location="cpu", weights_only=True)
    b = torch.load(runs["killed"] / "weights.pt", map_location="cpu", weights_only=True)
    assert a["dan_config"] == b["dan_config"]
    assert a["model"].keys() == b["model"].keys()
    differing = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not differing, differing
    # and training did move the weights away from the seeded initialisation
    torch.manual_seed(3)
    init = DanPlus(TINY).state_dict()
    assert not torch.equal(init["head.weight"], a["model"]["head.weight"])


# --- 3. a checkpoint of other settings is ignored ---------------------------------------


def _short_run(data, labels, folder, seed=0, crop_scale=(1.0, 1.0)):
    cfg = TrainConfig(
        epochs=2,
        batch_size=16,
        optimizer="adam",
        lr_start=1e-3,
        lr_end=1e-4,
        seed=seed,
        crop_scale=crop_scale,
    )
    return train_visual("img", [str(data)], labels, TINY, cfg, None, CPU, folder)


@pytest.mark.parametrize("change", ["train_labels", "seed", "augmentation"])
def test_checkpoint_of_other_settings_is_ignored(tmp_path, caplog, change):
    data, labels = planted_data(tmp_path, n_videos=12, frames_per_video=2, splits=(8, 4, 0))
    folder = tmp_path / "checkpoints"
    caplog.set_level("INFO", logger="traitlens")
    model, history = _short_run(data, labels, folder)
    assert [h["epoch"] for h in history] == [1, 2]
    saved = load_last_checkpoint(folder, "0" * 64)
    assert saved is None  # another fingerprint: ignored

    # the same settings again: nothing left to train, the checkpoint's history and weights
    caplog.clear()
    again, again_history = _short_run(data, labels, folder)
    assert "resuming after epoch 2" in caplog.text
    assert again_history == history
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key

    caplog.clear()
    if change == "train_labels":
        changed = labels.copy()
        is_train = changed["split"] == "train"
        changed.loc[is_train, "openness"] = 1.0 - changed.loc[is_train, "openness"]
        _, new_history = _short_run(data, changed, folder)
    elif change == "seed":
        _, new_history = _short_run(data, labels, folder, seed=1)
    else:
        _, new_history = _short_run(data, labels, folder, crop_scale=(0.5, 0.9))
    assert "resuming" not in caplog.text
    assert "ignoring checkpoint" in caplog.text
    assert [h["epoch"] for h in new_history] == [1, 2]
    assert new_history[0]["train_loss"] != history[0]["train_loss"]
    # the new run's checkpoint replaced the old one
    assert _checkpoint_epochs(folder) == [2]


# --- 4. the epoch plan ------------------------------------------------------------------


def test_epoch_plan_is_seeded_complete_and_keeps_the_last_batch():
    plan = epoch_plan(103, 10, seed=5, epoch=2, flip_p=0.5)
    assert [len(b.positions) for b in plan] == [10] * 10 + [3]
    assert all(len(b.positions) == len(b.flips) for b in plan)
    order = np.concatenate([b.positions for b in plan])
    assert np.array_equal(np.sort(order), np.arange(103))  # every sample exactly once
    flips = np.concatenate([b.flips for b in plan])
    assert flips.dtype == bool and 20 < flips.sum() < 83

    same = epoch_plan(103, 10, seed=5, epoch=2, flip_p=0.5)
    assert all(
        np.array_equal(a.positions, b.positions) and np.array_equal(a.flips, b.flips)
        for a, b in zip(plan, same, strict=True)
    )
    other_epoch = np.concatenate([b.positions for b in epoch_plan(103, 10, 5, 3, 0.5)])
    other_seed = np.concatenate([b.positions for b in epoch_plan(103, 10, 6, 2, 0.5)])
    assert not np.array_equal(order, other_epoch)
    assert not np.array_equal(order, other_seed)
    assert not np.array_equal(order, np.arange(103))

    no_flips = np.concatenate([b.flips for b in epoch_plan(103, 10, 5, 2, 0.0)])
    all_flips = np.concatenate([b.flips for b in epoch_plan(103, 10, 5, 2, 1.0)])
    assert not no_flips.any() and all_flips.all()
    assert [len(b.positions) for b in epoch_plan(20, 10, 0, 0, 0.5)] == [10, 10]


def test_augmentation_is_seeded_bounded_and_off_leaves_the_plan_unchanged():
    # off: exactly the plan of before augmentation existed (order, then flips, one stream)
    rng = np.random.default_rng([5, 2])
    order, flips = rng.permutation(103), rng.random(103) < 0.5
    plain = epoch_plan(103, 10, seed=5, epoch=2, flip_p=0.5)
    assert np.array_equal(np.concatenate([b.positions for b in plain]), order)
    assert np.array_equal(np.concatenate([b.flips for b in plain]), flips)
    assert all(b.crops is None and b.jitter is None for b in plain)

    aug = Augmentation(crop_scale=(0.6, 0.9), crop_aspect=1.25, jitter=0.2, color_jitter=0.3)
    plan = epoch_plan(103, 10, seed=5, epoch=2, flip_p=0.5, augmentation=aug)
    # on: order and flips unchanged, augmentation drawn after them
    assert np.array_equal(np.concatenate([b.positions for b in plan]), order)
    assert np.array_equal(np.concatenate([b.flips for b in plan]), flips)
    assert [len(b.crops) for b in plan] == [len(b.positions) for b in plan]
    crops = np.concatenate([b.crops for b in plan])
    jitter = np.concatenate([b.jitter for b in plan])

    # deterministic from (seed, epoch), different for another epoch or seed
    same = epoch_plan(103, 10, seed=5, epoch=2, flip_p=0.5, augmentation=aug)
    assert np.array_equal(np.concatenate([b.crops for b in same]), crops)
    assert np.array_equal(np.concatenate([b.jitter for b in same]), jitter)
    for seed, epoch in [(5, 3), (6, 2)]:
        other = epoch_plan(103, 10, seed=seed, epoch=epoch, flip_p=0.5, augmentation=aug)
        assert not np.allclose(np.concatenate([b.crops for b in other]), crops)

    # crops inside the frame; sides within scale x stretch; stretch within the aspect bound
    x0, y0, w, h = crops.T
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + w <= 1 + 1e-12).all() and (y0 + h <= 1 + 1e-12).all()
    assert (np.sqrt(w * h) >= 0.6 - 1e-12).all() and (np.sqrt(w * h) <= 0.9 + 1e-12).all()
    assert (w / h >= 1 / 1.25 - 1e-12).all() and (w / h <= 1.25 + 1e-12).all()
    assert np.ptp(np.sqrt(w * h)) > 0.2 and np.ptp(x0) > 0.05 and np.ptp(y0) > 0.05
    assert jitter.shape == (103, 5)
    assert (jitter[:, :2] >= 0.8).all() and (jitter[:, :2] <= 1.2).all()
    assert (jitter[:, 2:] >= 0.7).all() and (jitter[:, 2:] <= 1.3).all()
    assert np.ptp(jitter[:, :2], axis=0).min() > 0.3 and np.ptp(jitter[:, 2:], axis=0).min() > 0.45
    # each kind of jitter is drawn after the crops: without it, the crops stay as they were
    crops_only = Augmentation(crop_scale=(0.6, 0.9), crop_aspect=1.25)
    unjittered = epoch_plan(103, 10, seed=5, epoch=2, flip_p=0.5, augmentation=crops_only)
    assert np.array_equal(np.concatenate([b.crops for b in unjittered]), crops)
    assert all(b.jitter is None for b in unjittered)
    tint_only = Augmentation(color_jitter=0.3)
    tinted = np.concatenate([b.jitter for b in epoch_plan(103, 10, 5, 2, 0.5, tint_only)])
    assert (tinted[:, :2] == 1).all() and (tinted[:, 2:] != 1).all()

    # without a stretch crops are square fractions; whole-side crops sit at the origin
    square = np.concatenate(
        [b.crops for b in epoch_plan(50, 10, 1, 0, 0.5, Augmentation((0.7, 1.0)))]
    )
    assert np.allclose(square[:, 2], square[:, 3])
    assert square[:, 2].min() >= 0.7 and square[:, 2].max() <= 1.0
    # a stretch on a whole-frame crop is capped by the frame
    capped = np.concatenate(
        [b.crops for b in epoch_plan(50, 10, 1, 0, 0.5, Augmentation((1.0, 1.0), 1.5))]
    )
    assert (capped[:, 2:] <= 1.0).all() and (capped[:, :2] >= 0).all()
    assert (capped[:, 2:].min(axis=1) < 1.0).all() and (capped[:, 2:].max(axis=1) == 1.0).all()

    # pixel boxes: inside the frame, at least one pixel, the whole frame for (0, 0, 1, 1)
    boxes = crop_boxes(np.vstack([crops, [[0, 0, 1, 1], [0.999, 0.999, 1e-4, 1e-4]]]), 21, 37)
    x0p, y0p, x1p, y1p = boxes.T
    assert (x0p >= 0).all() and (y0p >= 0).all() and (x1p <= 37).all() and (y1p <= 21).all()
    assert (x1p > x0p).all() and (y1p > y0p).all()
    assert boxes[-2].tolist() == [0, 0, 37, 21]


def test_augmentation_settings_are_checked():
    # bounds stop at the schema (tests/test_config_sections.py); what it cannot state:
    assert not TrainConfig().augmentation().enabled
    cfg = TrainConfig.from_mapping({"crop_scale": [0.6, 1], "crop_aspect": 1.2, "jitter": 0.1})
    assert cfg.crop_scale == (0.6, 1.0) and cfg.augmentation().enabled
    assert TrainConfig(color_jitter=0.2).augmentation().enabled
    TrainConfig.from_mapping({"crop_scale": [0.7, 0.7]})  # min == max is a fixed crop
    with pytest.raises(UserError, match=r"crop_scale \[0.9, 0.6\].*min <= max"):
        TrainConfig.from_mapping({"crop_scale": [0.9, 0.6]})


def test_augmented_batches_crop_and_jitter_the_frames(tmp_path):
    # frames whose pixels say their own column, row and sample
    n, height, width = 6, 24, 40
    pixels = np.zeros((n, height, width, 3), np.uint8)
    pixels[..., 0] = np.arange(width)[None, None, :] * 6
    pixels[..., 1] = np.arange(height)[None, :, None] * 10
    pixels[..., 2] = (np.arange(n) * 40)[:, None, None]

    whole = np.tile([[0.0, 0.0, 1.0, 1.0]], (n, 1))
    assert torch.equal(crop_resize_batch(pixels, whole, 16), resize_batch(pixels, 16))
    # the right half and the bottom half of the frame, each resized to the whole input
    right = np.tile([[0.5, 0.0, 0.5, 1.0]], (n, 1))
    assert torch.equal(
        crop_resize_batch(pixels, right, 16), resize_batch(pixels[:, :, width // 2 :], 16)
    )
    bottom = np.tile([[0.0, 0.5, 1.0, 0.5]], (n, 1))
    got = crop_resize_batch(pixels, bottom, 16)
    assert torch.equal(got, resize_batch(pixels[:, height // 2 :], 16))
    assert got[:, 1].min() >= 110  # only rows 12..23 (green 120..230), blurred at the edge
    assert got[:, 2, 0, 0].tolist() == [0, 40, 80, 120, 160, 200]  # each sample its own

    x = resize_batch(pixels, 16)
    assert torch.equal(jitter_batch(x, np.ones((n, 5))), x)
    darker = jitter_batch(x, np.tile([[0.5, 1.0, 1.0, 1.0, 1.0]], (n, 1))).float()
    assert torch.allclose(darker, (x.float() * 0.5).round(), atol=1)
    flat = jitter_batch(x, np.tile([[1.0, 0.0, 1.0, 1.0, 1.0]], (n, 1)))  # each image's grey
    assert (flat.flatten(1).max(1).values - flat.flatten(1).min(1).values).max() <= 1
    tinted = jitter_batch(x, np.tile([[1.0, 1.0, 1.0, 0.5, 1.0]], (n, 1)))  # green halved
    assert torch.equal(tinted[:, [0, 2]], x[:, [0, 2]])
    assert torch.allclose(tinted[:, 1].float(), (x[:, 1].float() * 0.5).round(), atol=1)

    # through the loader's dataset: augmented items are those crops, labels follow positions
    data, labels = planted_data(tmp_path, n_videos=4, frames_per_video=2, splits=(4, 0, 0))
    index = build_index("img", [data], labels)
    aug = Augmentation(crop_scale=(0.5, 0.8), crop_aspect=1.2, jitter=0.3, color_jitter=0.2)
    plan = epoch_plan(len(index), 3, seed=0, epoch=0, flip_p=0.5, augmentation=aug)
    augmented = BatchDataset("img", index, plan, 32)
    plain = BatchDataset("img", index, sequential_plan(len(index), len(index)), 32)
    frames = PixelReader("img", index.paths).read(index.file, index.row)
    reference = plain[0][0]
    assert torch.equal(reference, resize_batch(frames, 32))
    for i, batch in enumerate(plan):
        x, flips, y, pos = augmented[i]
        cropped = crop_resize_batch(frames[batch.positions], batch.crops, 32)
        expected = jitter_batch(cropped, batch.jitter)
        assert torch.equal(x, expected)
        assert not torch.equal(x, reference[batch.positions])
        assert torch.equal(pos, torch.from_numpy(batch.positions))
        assert torch.equal(flips, torch.from_numpy(batch.flips))
        assert torch.equal(y, torch.from_numpy(index.labels[batch.positions]))


# --- 5. the sample index and the pixel reader --------------------------------------------


def _coded_faces(n: int, file_no: int, size: int = 8) -> np.ndarray:
    """Face crops whose pixels say which file and row they are."""
    pixels = np.zeros((n, size, size, 3), np.uint8)
    pixels[..., 0] = file_no
    pixels[..., 1] = np.arange(n)[:, None, None]
    pixels[..., 2] = 7
    return pixels


def test_face_index_and_pixel_reader(tmp_path):
    labels = pd.DataFrame(
        {
            "video_id": ["a1", "b1", "c9"],
            "split": ["train", "validation", "test"],
            **{t: [0.1 * (k + 1), 0.2, 0.3] for k, t in enumerate(BIG_FIVE)},
        }
    )
    # file 0: videos a1 (rows 0-3) and unknown (rows 4-5, not in the labels)
    first = write_shard(
        tmp_path / "faces_000.h5",
        "face",
        ["a1", "unknown"],
        _coded_faces(6, 0),
        [0, 0, 0, 0, 1, 1],
        [0, 15, 30, 45, 0, 15],
        success=[True, False, True, True, True, True],
    )
    # file 1: videos b1 (rows 0-2) and c9 (rows 3-4)
    second = write_shard(
        tmp_path / "faces_001.h5",
        "face",
        ["b1", "c9"],
        _coded_faces(5, 1),
        [0, 0, 0, 1, 1],
        [0, 15, 30, 0, 15],
        success=[True, True, False, False, True],
    )
    index = build_index("face", [first, second], labels)
    expected = [  # (file, row, video, frame)
        (0, 0, "a1", 0),
        (0, 2, "a1", 30),
        (0, 3, "a1", 45),
        (1, 0, "b1", 0),
        (1, 1, "b1", 15),
        (1, 4, "c9", 15),
    ]
    got = list(
        zip(
            index.file.tolist(),
            index.row.tolist(),
            index.video_id.tolist(),
            index.frame_index.tolist(),
            strict=True,
        )
    )
    assert got == expected
    assert index.split.tolist() == ["train"] * 3 + ["validation"] * 2 + ["test"]
    by_video = labels.set_index("video_id")[list(BIG_FIVE)]
    assert np.allclose(index.labels, by_video.loc[index.video_id].to_numpy())
    assert index.labels.dtype == np.float32

    # rows in the requested, unsorted order across both files
    reader = PixelReader("face", index.paths)
    try:
        files = np.array([1, 0, 1, 0, 0, 1])
        rows = np.array([4, 3, 0, 0, 2, 1])
        pixels = reader.read(files, rows)
    finally:
        reader.close()
    assert pixels.shape == (6, 8, 8, 3) and pixels.dtype == np.uint8
    assert pixels[:, 0, 0, 0].tolist() == files.tolist()
    assert pixels[:, 0, 0, 1].tolist() == rows.tolist()
    assert (pixels[..., 2] == 7).all()

    # the image model reads the frames dataset of frames shards
    img = write_shard(
        tmp_path / "frames_000.h5", "img", ["a1"], _coded_faces(2, 3), [0, 0], [0, 15]
    )
    img_index = build_index("img", [img], labels)
    assert img_index.row.tolist() == [0, 1] and len(img_index) == 2


def test_face_index_refuses_a_frames_file(tmp_path):
    labels = pd.DataFrame({"video_id": ["a1"], "split": ["train"], **{t: [0.5] for t in BIG_FIVE}})
    img = write_shard(tmp_path / "frames_000.h5", "img", ["a1"], _coded_faces(2, 0), [0, 0], [0, 1])
    with pytest.raises(UserError, match="frames_000.h5.*missing dataset"):
        build_index("face", [img], labels)


# --- 6. the weights file ----------------------------------------------------------------


def test_weights_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    model = DanPlus(TINY)
    # move the batch-norm statistics away from their defaults so they must be saved too
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 3, 32, 32) * 255)
    model.eval()
    pixels = torch.rand(5, 3, 32, 32) * 255
    with torch.no_grad():
        before = model(pixels)
    path = tmp_path / "models" / "img" / "weights.pt"
    save_weights(model, "face", path)
    loaded, kind = load_trained(path)
    assert kind == "face"
    assert loaded.cfg == TINY
    assert not loaded.training
    with torch.no_grad():
        after = loaded(pixels)
    assert torch.equal(before, after)

    text = tmp_path / "weights_text.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(UserError, match=re.escape(str(text))):
        load_trained(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": model.state_dict()}, foreign)
    with pytest.raises(UserError, match=re.escape(str(foreign)) + ".*format tag"):
        load_trained(foreign)


# --- 7. CUDA requested without a GPU -----------------------------------------------------


def test_cuda_without_gpu_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="cuda"):
        resolve_device("cuda")
    data, labels = planted_data(tmp_path, n_videos=4, frames_per_video=1, splits=(4, 0, 0))
    folder = tmp_path / "checkpoints"
    with pytest.raises(UserError, match="train.device"):
        train_visual(
            "img",
            [str(data)],
            labels,
            TINY,
            TrainConfig(epochs=1),
            None,
            RunConfig(device="cuda"),
            folder,
        )
    assert not folder.exists()  # refused before any work
    model = DanPlus(TINY)
    with pytest.raises(UserError, match="cuda"):
        predict_visual(model, "img", [str(data)], labels, 4, RunConfig(device="cuda"))


def test_shard_lookup_numbers_the_shards_and_names_a_stale_source():
    from traitlens.core.errors import UserError
    from traitlens.interpret.frame_refs import shard_lookup

    paths = ["/r/faces/s000.h5", "/r/faces/s001.h5"]
    assert shard_lookup(["s001.h5", "s000.h5", "s001.h5"], paths, "faces", "d.h5", "x") == {
        "s000.h5": 0,
        "s001.h5": 1,
    }
    with pytest.raises(UserError) as err:
        shard_lookup(["s002.h5"], paths, "faces", "act/conv5_3.h5", "dump_activations")
    message = str(err.value)
    assert message.startswith("act/conv5_3.h5: its frames come from faces file(s) ['s002.h5']")
    assert "the dump_activations rule rebuilds it" in message
