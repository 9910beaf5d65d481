"""The class activation map file ``cam/<source>.h5``: its one owner.

Dataset names, attributes and the schema text stored in every file (CAM_SCHEMA), the
writer and the checked reader. :mod:`traitlens.interpret.cam` computes the maps; the
figures, the face-overlap table and the demo's scoring read them back through
:func:`read_cam_file`. Needs only numpy and h5py, so those analyses run without PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import UserError
from traitlens.core.h5checks import as_str, open_checked, rebuild_hint

RULE = "compute_cam"
KIND = "CAM"

CAM_SCHEMA = """\
Class activation maps of one model on the frames of one split (traitlens compute_cam).
Per frame, row i (N = the usable frames of the split, in shard-file order):
  video_id     utf-8 string (N,) the frame's video
  frame_index  int32 (N,) 0-based index of the frame in its video
  shard_file   utf-8 string (N,) basename of the shard file the pixels came from
               (frames/<shard>.h5 for kind img, faces/<shard>.h5 for kind face)
  row          int64 (N,) row in that file's pixel dataset (frames | aligned)
  maps         float32 (N, 5, h, w) raw maps at the network's resolution, traits in
               attr traits order; method cam: CAM_t = sum_k w_{k,t} A_k over the maps A_k
               of the cam_conv layer (after its ReLU), whose spatial mean plus the head's
               bias is trait t's logit; method gradcam: ReLU(sum_k alpha_{k,t} A_k) over
               the post-ReLU maps A_k of attr layer, alpha_{k,t} = spatial mean of
               d logit_t / d A_k (logit = the output before the sigmoid). The model saw
               the whole image squashed to input_size x input_size, so map cell (y, x)
               covers the same fraction of the image's height and width.
  predictions  float32 (N, 5) the model's output (after the sigmoid)
Attributes: source, method (cam | gradcam), layer, kind (img | face), input_size, traits,
split, created_by, schema."""

DATASETS = ("video_id", "frame_index", "shard_file", "row", "maps", "predictions")
# attributes a reader cannot do without (traits: the order of the maps' second axis)
REQUIRED_ATTRS = ("kind", "method", "source", "split", "layer", "traits")


def write_cam_file(
    path: str | Path,
    source: str,
    method: str,
    layer: str,
    kind: str,
    input_size: int,
    split: str,
    index,
    maps: np.ndarray,
    predictions: np.ndarray,
    *,
    traits: Sequence[str],
    created_by: str = "traitlens.interpret.cam_file",
) -> None:
    """Write ``cam/<source>.h5`` (CAM_SCHEMA) atomically. ``index``: the frames (a
    SampleIndex or anything with its video_id, frame_index, file, row and paths)."""
    n, n_traits = len(index.video_id), len(traits)
    if maps.shape[:2] != (n, n_traits) or predictions.shape != (n, n_traits):
        raise ValueError(f"maps {maps.shape} / predictions {predictions.shape} for {n} frames")
    strings = h5py.string_dtype()
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.attrs.update(
            source=source,
            method=method,
            layer=layer,
            kind=kind,
            input_size=int(input_size),
            traits=list(traits),
            split=split,
            created_by=created_by,
            schema=CAM_SCHEMA,
        )
        shard_files = np.array([Path(index.paths[i]).name for i in index.file], dtype=object)
        values = {
            "video_id": (np.array(index.video_id, dtype=object), strings),
            "frame_index": (np.asarray(index.frame_index).astype(np.int32), None),
            "shard_file": (shard_files, strings),
            "row": (np.asarray(index.row).astype(np.int64), None),
            "maps": (maps.astype(np.float32), None),
            "predictions": (predictions.astype(np.float32), None),
        }
        for name, (data, dtype) in values.items():
            f.create_dataset(name, data=data, dtype=dtype, track_times=False)


def read_cam_file(path: str | Path) -> dict:
    """A CAM file as one dict: its attributes (source, method, layer, kind, input_size,
    traits, split, created_by, schema) and its datasets as arrays (video_id and
    shard_file as object arrays of str)."""
    with open_checked(path, KIND, RULE, DATASETS) as f:
        out: dict = {
            k: (as_str(v) if isinstance(v, bytes | str) else v) for k, v in f.attrs.items()
        }
        for name in ("video_id", "shard_file"):
            out[name] = np.array([as_str(v) for v in f[name][:]], dtype=object)
        for name in ("frame_index", "row", "maps", "predictions"):
            out[name] = f[name][:]
    missing = [k for k in REQUIRED_ATTRS if k not in out]
    if not missing:
        out["traits"] = [as_str(t) for t in np.atleast_1d(out["traits"])]
    n = len(out["video_id"])
    n_traits = len(out.get("traits", ()))
    shapes_ok = (
        out["maps"].ndim == 4
        and out["maps"].shape[:2] == (n, n_traits)
        and out["predictions"].shape == (n, n_traits)
        and all(len(out[k]) == n for k in ("frame_index", "row", "shard_file"))
    )
    if not shapes_ok or missing:
        problem = f"missing attributes {missing}" if missing else "datasets of unequal length"
        raise UserError(f"{path}: not a valid CAM file ({problem}); {rebuild_hint(path, RULE)}")
    out["input_size"] = int(out.get("input_size", 0))
    return out
