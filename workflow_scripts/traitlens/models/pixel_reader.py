"""The pixels a visual model sees, read by (file, row) from the shard files: numpy and h5py only.

Kept apart from the torch side of the training data (``train_data``) so that the figure
rules that show frames and faces (plot_cam, plot_unit_segmentation, find_detectors) run in
the torch-free analysis env.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import h5py
import numpy as np

from traitlens.extract import frames_file
from traitlens.faces import faces_file

# kind -> the module that owns the shard files it reads (frames, or aligned face crops):
# both offer read_row_keys(path, label) and open_pixels(path, label, **options)
SOURCES = {"img": frames_file, "face": faces_file}


class PixelReader:
    """Reads rows of the pixel datasets; opens files lazily, once per process (h5py
    handles must not cross a fork into DataLoader workers).

    Every file is checked once when the reader is made (in the main process): a bad
    file raised inside a DataLoader worker would reach the user wrapped in the worker's
    traceback."""

    def __init__(self, kind: str, paths: Sequence[str]):
        self.kind = kind
        self.source = SOURCES[kind]
        self.paths = list(paths)
        for path in self.paths:
            self._open(path).file.close()
        self._datasets: dict[int, h5py.Dataset] = {}  # a name lookup costs ~0.1 ms a row
        self._pid = os.getpid()

    def _pixels(self, n: int) -> h5py.Dataset:
        if os.getpid() != self._pid:  # a forked worker: start with fresh handles
            self._datasets, self._pid = {}, os.getpid()
        if n not in self._datasets:
            self._datasets[n] = self._open(self.paths[n])
        return self._datasets[n]

    def _open(self, path: str) -> h5py.Dataset:
        # No chunk cache: a chunk is one row, read once per pass in random order, so the
        # cache (8 MiB per open file with HDF5 2) never hits but kept ~8 MiB resident per
        # shard file (128 files x every loader worker on First Impressions); measured in
        # bench/README.md "Memory per stage".
        return self.source.open_pixels(path, self.kind, rdcc_nbytes=0)

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
        for ds in self._datasets.values():
            ds.file.close()
        self._datasets = {}
