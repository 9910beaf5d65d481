"""Training data for the visual models, read batch by batch from the shard HDF5 files.

Samples are frames (``frames/<shard>.h5``, dataset ``frames``) for the image model and
aligned face crops (``faces/<shard>.h5``, dataset ``aligned``, rows whose ``success`` is
true) for the face model. Only an index (file, row, video) is held in memory; pixels are
read one batch at a time, so memory stays flat as the data set grows.

The order of an epoch and its horizontal flips come from ``(seed, epoch)`` alone, so a
run resumed from a checkpoint sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from traitlens.h5checks import as_str, open_checked
from traitlens.labels import BIG_FIVE

# kind -> (pixel dataset, rule that writes the file)
SOURCES = {"img": ("frames", "extract_shard"), "face": ("aligned", "detect_faces")}


@dataclass(frozen=True)
class SampleIndex:
    """Every usable sample: which file, which row, which video, its split and labels."""

    paths: tuple[str, ...]
    file: np.ndarray  # int32 (n,) index into paths
    row: np.ndarray  # int64 (n,) row in the file's pixel dataset
    video_id: np.ndarray  # object (n,)
    frame_index: np.ndarray  # int32 (n,)
    split: np.ndarray  # object (n,)
    labels: np.ndarray  # float32 (n, 5) in BIG_FIVE order; NaN for unlabelled rows

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, mask: np.ndarray) -> SampleIndex:
        return SampleIndex(
            self.paths,
            self.file[mask],
            self.row[mask],
            self.video_id[mask],
            self.frame_index[mask],
            self.split[mask],
            self.labels[mask],
        )


def build_index(kind: str, paths: Sequence[str | Path], labels: pd.DataFrame) -> SampleIndex:
    """Index the usable rows of the shard files; ``labels`` is read_labels(manifest).

    Rows of videos missing from ``labels`` are dropped (they are not in the manifest).
    """
    dataset, rule = SOURCES[kind]
    required = [dataset, "video_index", "frame_index", "video_id"]
    if kind == "face":
        required.append("success")
    by_video = labels.set_index("video_id")
    parts = []
    for file_no, path in enumerate(paths):
        with open_checked(path, kind, rule, required) as f:
            ids = np.array([as_str(v) for v in f["video_id"][:]], dtype=object)
            video_index = f["video_index"][:]
            keep = np.ones(len(video_index), dtype=bool)
            if kind == "face":
                keep &= f["success"][:].astype(bool)
            rows = np.flatnonzero(keep)
            parts.append((file_no, rows, ids[video_index[rows]], f["frame_index"][:][rows]))
    file_col = np.concatenate([np.full(len(r), n, np.int32) for n, r, _, _ in parts] or [[]])
    row_col = np.concatenate([r for _, r, _, _ in parts] or [[]]).astype(np.int64)
    vid_col = np.concatenate([v for _, _, v, _ in parts] or [[]]).astype(object)
    frame_col = np.concatenate([fr for _, _, _, fr in parts] or [[]]).astype(np.int32)
    known = np.isin(vid_col, by_video.index.to_numpy())
    vid_col, file_col, row_col, frame_col = (
        vid_col[known],
        file_col[known],
        row_col[known],
        frame_col[known],
    )
    matched = by_video.loc[vid_col] if len(vid_col) else by_video.iloc[:0]
    return SampleIndex(
        tuple(str(p) for p in paths),
        file_col,
        row_col,
        vid_col,
        frame_col,
        matched["split"].to_numpy(dtype=object),
        matched[list(BIG_FIVE)].to_numpy(dtype=np.float32),
    )


def epoch_plan(
    n_samples: int, batch_size: int, seed: int, epoch: int, flip_p: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of (sample positions, flip flags) for one epoch, from (seed, epoch) only.

    The last partial batch is kept (every training frame is seen once per epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_samples)
    flips = rng.random(n_samples) < flip_p
    return [
        (order[i : i + batch_size], flips[i : i + batch_size])
        for i in range(0, n_samples, batch_size)
    ]


def sequential_plan(n_samples: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches in index order without flips (prediction, activation dumps)."""
    return [
        (
            np.arange(i, min(i + batch_size, n_samples)),
            np.zeros(min(batch_size, n_samples - i), bool),
        )
        for i in range(0, n_samples, batch_size)
    ]


class PixelReader:
    """Reads rows of the pixel datasets; opens files lazily, once per process (h5py
    handles must not cross a fork into DataLoader workers)."""

    def __init__(self, kind: str, paths: Sequence[str]):
        self.dataset = SOURCES[kind][0]
        self.paths = list(paths)
        self._files: dict[int, h5py.File] = {}
        self._datasets: dict[int, h5py.Dataset] = {}  # a name lookup costs ~0.1 ms a row
        self._pid = os.getpid()

    def _pixels(self, n: int) -> h5py.Dataset:
        if os.getpid() != self._pid:  # a forked worker: start with fresh handles
            self._files, self._datasets, self._pid = {}, {}, os.getpid()
        if n not in self._datasets:
            self._files[n] = h5py.File(self.paths[n], "r")
            self._datasets[n] = self._files[n][self.dataset]
        return self._datasets[n]

    def read(self, files: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), H, W, 3) in the order given.

        Row by row in file order: h5py's list indexing (``ds[[r1, r2, ...]]``) costs
        ~25 ms per 216x384 frame here against 0.04 ms for ``ds[r]`` (measured in
        bench/bench_train.py), which made the loader 5x slower than the model.
        """
        out = None
        for pos in np.lexsort((rows, files)):
            ds = self._pixels(int(files[pos]))
            if out is None:
                out = np.empty((len(rows), *ds.shape[1:]), dtype=np.uint8)
            out[pos] = ds[int(rows[pos])]
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files, self._datasets = {}, {}


def resize_batch(pixels: np.ndarray, size: int) -> torch.Tensor:
    """uint8 NHWC -> uint8 N x 3 x size x size (channels_last), antialiased bilinear.

    Frames are squashed to a square like the paper's 224x224 input. Done in uint8 on the
    CPU where the batch is read (a DataLoader worker): 10x faster than in float here,
    and 4.6x fewer bytes than a 640x360 frame cross to the GPU.
    """
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x.contiguous(memory_format=torch.channels_last)


class BatchDataset(torch.utils.data.Dataset):
    """Item i = batch i of a plan: (uint8 N x 3 x size x size pixels, flip flags, labels,
    positions)."""

    def __init__(
        self, kind: str, index: SampleIndex, plan: list[tuple[np.ndarray, np.ndarray]], size: int
    ):
        self.index = index
        self.plan = plan
        self.size = size
        self.reader = PixelReader(kind, index.paths)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int):
        pos, flips = self.plan[i]
        pixels = self.reader.read(self.index.file[pos], self.index.row[pos])
        return (
            resize_batch(pixels, self.size),
            torch.from_numpy(flips),
            torch.from_numpy(self.index.labels[pos]),
            torch.from_numpy(pos),
        )


def batch_loader(
    kind: str,
    index: SampleIndex,
    plan: list[tuple[np.ndarray, np.ndarray]],
    size: int,
    num_workers: int,
    pin_memory: bool,
) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        BatchDataset(kind, index, plan, size),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def to_model_input(pixels: torch.Tensor, flips: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NCHW (from resize_batch) -> float 0..255 on ``device``, flipped where asked."""
    x = pixels.to(device, non_blocking=True).float()
    flips = flips.to(device, non_blocking=True)
    if bool(flips.any()):
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    return x.contiguous(memory_format=torch.channels_last)
