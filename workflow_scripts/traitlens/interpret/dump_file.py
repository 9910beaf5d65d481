"""The activation dump file ``activations/<model>/<layer>.h5``: its one owner.

Dataset names, attributes and the schema text stored in every file (SCHEMA), the streaming
writer (:class:`DumpWriter`, which the forward pass in
:mod:`traitlens.interpret.activation_dump` feeds) and the checked readers the analyses
use. Needs only numpy and h5py, so the analyses that read dumps run without PyTorch.

Written in one pass, batch by batch, with memory that does not grow with the number of
frames: reductions go to disk chunk by chunk and the top-K is merged batch by batch into
K slots per unit (O(U*K*h*w + batch)). A file appears under its final name only when
complete (temp name, rename on close).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from traitlens.core.atomic import temp_next_to
from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("traitlens.interpret.activation_dump")

RULE = "dump_activations"
KIND = "activation dump"
KEY_COLUMNS = ("video_id", "frame_index", "split", "shard_file", "row")
REDUCTIONS = ("max", "mean", "argmax")
TOP_DATASETS = ("top_index", "top_value", "top_maps")
ATTRS = (
    "model",
    "layer",
    "kind",
    "input_size",
    "n_frames",
    "n_units",
    "map_height",
    "map_width",
    "top_k",
    "stores_maps",
    "created_by",
    "schema",
)
F16_MAX = float(np.finfo(np.float16).max)  # 65504: larger activations are clipped to it
_EMPTY_POS = np.iinfo(np.int64).max  # an unfilled top-K slot (loses every tie)

SCHEMA = """\
Activations of one layer of a trained model (traitlens dump_activations). N = n_frames
(the frames of the dumped splits, in shard-file order), U = n_units (the layer's
channels, after its ReLU for a conv layer), h x w = map_height x map_width (the map over
the input_size x input_size model input). Per frame, row i:
  video_id     utf-8 string (N,)
  frame_index  int32 (N,) 0-based index of the frame in its video
  split        utf-8 string (N,) train | validation | test
  shard_file   utf-8 string (N,) basename of the shard file the pixels were read from
               (frames/<shard>.h5 for the img model, faces/<shard>.h5 for face)
  row          int64 (N,) row in that file's pixel dataset (frames | aligned)
  max          float32 (N, U) largest activation of the unit's map
  mean         float32 (N, U) mean activation of the unit's map
  argmax       int32 (N, U) flat index y * map_width + x of the largest activation
               (the first in row-major order when several are equal)
  maps         float16 (N, U, h, w) the maps (values above 65504 clipped to it);
               uncompressed, chunked by frames; only when stores_maps
max, mean and argmax are lzf-compressed and chunked by rows.
Per unit u, its top_k frames by max, descending, ties -> lower row first:
  top_index    int64 (U, top_k) rows of the frames (positions in the datasets above)
  top_value    float32 (U, top_k) their max
  top_maps     float16 (U, top_k, h, w) their maps of unit u
Attributes: model (face | img), layer, kind (img | face), input_size, n_frames, n_units,
map_height, map_width, top_k, stores_maps, created_by, schema."""


# --- writing -----------------------------------------------------------------------------


def _to_f16(maps: np.ndarray) -> np.ndarray:
    if maps.dtype == np.float16:
        return maps
    return np.minimum(maps, F16_MAX).astype(np.float16)


def reduce_maps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(max float32, mean float32, argmax int32 flat y * w + x), each (B, U), of (B, U, h, w)."""
    flat = maps.reshape(*maps.shape[:2], -1)
    argmax = flat.argmax(axis=-1)
    mx = np.take_along_axis(flat, argmax[..., None], axis=-1)[..., 0]
    mean = flat.mean(axis=-1, dtype=np.float32)
    return mx.astype(np.float32), mean.astype(np.float32), argmax.astype(np.int32)


class DumpWriter:
    """Writes one layer's dump file; feed it batches in frame order with :meth:`add`.

    ``keys``: a table (e.g. a pandas DataFrame) with the KEY_COLUMNS, one row per frame.

    Use as a context manager (or call :meth:`close` / :meth:`abort`): the file is written
    under a temporary name next to ``path`` and renamed to ``path`` only by a successful
    close; an exception removes the temporary file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        model_name: str,
        layer: str,
        kind: str,
        input_size: int,
        n_frames: int,
        n_units: int,
        map_hw: tuple[int, int],
        top_k: int,
        store_maps: bool,
        keys,
        created_by: str | None = None,
    ):
        if not 1 <= top_k <= n_frames:
            raise ValueError(f"top_k {top_k} must be in 1..n_frames ({n_frames})")
        if len(keys) != n_frames:
            raise ValueError(f"keys have {len(keys)} rows for {n_frames} frames")
        missing = [c for c in KEY_COLUMNS if c not in keys]
        if missing:
            raise ValueError(f"keys lack columns {missing}")
        self.path = Path(path)
        self.n_frames, self.n_units, self.top_k = n_frames, n_units, top_k
        self.map_hw = (int(map_hw[0]), int(map_hw[1]))
        self.store_maps = store_maps
        h, w = self.map_hw
        self._tmp = temp_next_to(self.path)
        self._state = "open"  # -> closed (renamed) | aborted (removed)
        frame_bytes = n_units * h * w * 2
        # whole chunks in the cache: a partial chunk write must not go to disk and back
        maps_rows = max(1, min(n_frames, 64, 2**20 // max(1, frame_bytes)))
        cache = max(2**20, 4 * maps_rows * frame_bytes)
        try:
            self._file = h5py.File(self._tmp, "w", track_order=False, rdcc_nbytes=cache)
            self._write_header(model_name, layer, kind, input_size, created_by, keys)
            # reductions are buffered a chunk at a time and written as whole chunks
            self._rows = max(1, min(n_frames, 4096, 2**20 // (4 * n_units)))
            self._red = {}
            for name, dtype in zip(REDUCTIONS, (np.float32, np.float32, np.int32), strict=True):
                self._red[name] = self._file.create_dataset(
                    name,
                    (n_frames, n_units),
                    dtype=dtype,
                    chunks=(self._rows, n_units),
                    compression="lzf",
                    track_times=False,
                )
            self._buffer = {
                name: np.empty((self._rows, n_units), ds.dtype) for name, ds in self._red.items()
            }
            self._maps = None
            if store_maps:
                self._maps = self._file.create_dataset(
                    "maps",
                    (n_frames, n_units, h, w),
                    dtype=np.float16,
                    chunks=(maps_rows, n_units, h, w),
                    track_times=False,
                )
        except BaseException:
            self.abort()
            raise
        self._buffered = 0  # rows in self._buffer
        self._flushed = 0  # rows written to the reduction datasets
        self._next = 0  # the next frame add() expects
        # top-K slots per unit, unordered; sorted once on close
        self._top_value = np.full((n_units, top_k), -np.inf, np.float32)
        self._top_pos = np.full((n_units, top_k), _EMPTY_POS, np.int64)
        self._top_maps = np.zeros((n_units, top_k, h, w), np.float16)
        self._clipped = False

    def _write_header(self, model_name, layer, kind, input_size, created_by, keys) -> None:
        f = self._file
        h, w = self.map_hw
        f.attrs.update(
            model=model_name,
            layer=layer,
            kind=kind,
            input_size=int(input_size),
            n_frames=self.n_frames,
            n_units=self.n_units,
            map_height=h,
            map_width=w,
            top_k=self.top_k,
            stores_maps=bool(self.store_maps),
            created_by=created_by or "traitlens.interpret.dump_file",
            schema=SCHEMA,
        )
        text = h5py.string_dtype()
        for name in ("video_id", "split", "shard_file"):
            values = np.array([str(v) for v in keys[name]], dtype=object)
            f.create_dataset(name, data=values, dtype=text, track_times=False)
        f.create_dataset(
            "frame_index", data=keys["frame_index"].to_numpy(np.int32), track_times=False
        )
        f.create_dataset("row", data=keys["row"].to_numpy(np.int64), track_times=False)

    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add(
        self,
        start: int,
        maps: np.ndarray,
        reductions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Frames start .. start+B-1: ``maps`` (B, U, h, w) float32 (or float16, stored as
        is); ``reductions`` (max, mean, argmax) when already computed (on the GPU), else
        computed here from ``maps``. Batches must come in frame order."""
        b = len(maps)
        if start != self._next:
            raise ValueError(f"add(start={start}): expected frame {self._next} (frame order)")
        if maps.shape[1:] != (self.n_units, *self.map_hw):
            raise ValueError(
                f"maps of shape {maps.shape}; expected (B, {self.n_units}, "
                f"{self.map_hw[0]}, {self.map_hw[1]})"
            )
        if start + b > self.n_frames:
            raise ValueError(f"frames {start}..{start + b - 1} past n_frames {self.n_frames}")
        mx, mean, argmax = reductions if reductions is not None else reduce_maps(maps)
        if not self._clipped and b and float(mx.max()) > F16_MAX:
            self._clipped = True
            log.warning(
                "%s: activations above %g; the stored float16 maps are clipped to it",
                self.path,
                F16_MAX,
            )
        if self._maps is not None:
            self._maps[start : start + b] = _to_f16(maps)
        self._buffer_reductions((mx, mean, argmax))
        self._merge_top(start, maps, mx)
        self._next = start + b

    def _buffer_reductions(self, values: tuple[np.ndarray, ...]) -> None:
        done, b = 0, len(values[0])
        while done < b:
            take = min(b - done, self._rows - self._buffered)
            for name, v in zip(REDUCTIONS, values, strict=True):
                self._buffer[name][self._buffered : self._buffered + take] = v[done : done + take]
            self._buffered += take
            done += take
            if self._buffered == self._rows:
                self._flush()

    def _flush(self) -> None:
        n = self._buffered
        for name, ds in self._red.items():
            ds[self._flushed : self._flushed + n] = self._buffer[name][:n]
        self._flushed += n
        self._buffered = 0

    def _merge_top(self, start: int, maps: np.ndarray, mx: np.ndarray) -> None:
        """Merge the batch into each unit's K slots: the K best of (slots + batch) under
        (value descending, position ascending), a strict total order, so batch by batch
        gives exactly the top-K of all frames. Evicted slots take the entering maps."""
        k, b = self.top_k, len(mx)
        if not b:
            return
        values = np.concatenate([self._top_value, mx.T.astype(np.float32)], axis=1)
        batch_pos = np.arange(start, start + b, dtype=np.int64)
        pos = np.concatenate([self._top_pos, np.broadcast_to(batch_pos, (self.n_units, b))], 1)
        keep = np.lexsort((pos, -values), axis=-1)[:, :k]  # (U, K) into slots + batch
        entering = keep >= k
        if not entering.any():
            return
        kept_slot = np.zeros((self.n_units, k), bool)
        unit = np.broadcast_to(np.arange(self.n_units)[:, None], keep.shape)
        kept_slot[unit[~entering], keep[~entering]] = True
        # per unit, as many slots are freed as frames enter; both nonzero lists are in
        # unit order, so they pair up unit by unit
        free_u, free_slot = np.nonzero(~kept_slot)
        new_u, new_k = np.nonzero(entering)
        frame = keep[new_u, new_k] - k
        self._top_value[free_u, free_slot] = values[new_u, keep[new_u, new_k]]
        self._top_pos[free_u, free_slot] = start + frame
        self._top_maps[free_u, free_slot] = _to_f16(maps[frame, new_u])

    def close(self) -> None:
        """Write the top-K and rename the file to its final name."""
        if self._state == "closed":
            return
        if self._state == "aborted":
            raise ValueError(f"{self.path}: the dump was aborted; nothing to close")
        try:
            if self._next != self.n_frames:
                raise ValueError(
                    f"{self.path}: {self._next} of {self.n_frames} frames added; not closing"
                )
            if self._buffered:
                self._flush()
            # slots -> (value descending, position ascending)
            order = np.lexsort((self._top_pos, -self._top_value), axis=-1)
            f = self._file
            f.create_dataset(
                "top_index", data=np.take_along_axis(self._top_pos, order, 1), track_times=False
            )
            f.create_dataset(
                "top_value", data=np.take_along_axis(self._top_value, order, 1), track_times=False
            )
            unit = np.arange(self.n_units)[:, None]
            f.create_dataset("top_maps", data=self._top_maps[unit, order], track_times=False)
            f.close()
            os.replace(self._tmp, self.path)
            self._state = "closed"
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close and remove the temporary file (no final file appears); a closed dump's
        final file stays."""
        if self._state == "closed":
            return
        self._state = "aborted"
        file = getattr(self, "_file", None)
        if file is not None and file.id.valid:
            file.close()
        if self._tmp.exists():
            self._tmp.unlink()


# --- reading -----------------------------------------------------------------------------


def _open(path: str | os.PathLike[str], datasets: Sequence[str]) -> h5py.File:
    f = open_checked(path, KIND, RULE, datasets)
    missing = [a for a in ATTRS if a not in f.attrs]
    if missing:
        f.close()
        raise UserError(f"{path}: missing attribute(s) {missing}; {rebuild_hint(path, RULE)}")
    return f


def _attr(value):
    if isinstance(value, bytes | str):
        return as_str(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def dump_info(path: str | os.PathLike[str]) -> dict:
    """The file's attributes as plain Python values."""
    with _open(path, ()) as f:
        return {k: _attr(v) for k, v in f.attrs.items()}


def read_keys(path: str | os.PathLike[str]) -> pd.DataFrame:
    """video_id, frame_index, split, shard_file, row: one row per frame (dump order)."""
    import pandas as pd  # only this reader returns a table; the others need numpy alone

    with _open(path, KEY_COLUMNS) as f:
        return pd.DataFrame(
            {
                "video_id": [as_str(v) for v in f["video_id"][:]],
                "frame_index": f["frame_index"][:].astype(np.int32),
                "split": [as_str(v) for v in f["split"][:]],
                "shard_file": [as_str(v) for v in f["shard_file"][:]],
                "row": f["row"][:].astype(np.int64),
            }
        )


def read_reduction(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """(N, U) ``max`` | ``mean`` (float32) | ``argmax`` (int32, flat y * w + x)."""
    if name not in REDUCTIONS:
        raise ValueError(f"unknown reduction {name!r}; expected one of {REDUCTIONS}")
    with _open(path, (name,)) as f:
        return f[name][:]


def read_top(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top_index int64 (U, K), top_value float32 (U, K), top_maps float32 (U, K, h, w))."""
    with _open(path, TOP_DATASETS) as f:
        return f["top_index"][:], f["top_value"][:], f["top_maps"][:].astype(np.float32)


def iter_maps(path: str | os.PathLike[str], chunk_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, float32 maps (c, U, h, w)) for frames start .. start+c-1, c <= chunk_frames.
    UserError when the file was written without maps."""
    with _open(path, ()) as f:
        if not bool(f.attrs["stores_maps"]) or "maps" not in f:
            raise UserError(
                f"{path}: written without maps (activations.store_maps: false); set it to "
                f"true, then {rebuild_hint(path, RULE)}"
            )
        ds = f["maps"]
        for start in range(0, ds.shape[0], max(1, int(chunk_frames))):
            yield start, ds[start : start + chunk_frames].astype(np.float32)
