"""An activation dump written straight from the shared spec's layout, without the
workflow's dump writer, so readers are tested against the format as specified."""

from __future__ import annotations

import h5py
import numpy as np


def write_dump(
    path,
    maps: np.ndarray,
    layer: str,
    kind: str = "face",
    model: str = "face",
    top_k: int = 5,
    store_maps: bool = True,
    shard_file: list[str] | None = None,
    rows: np.ndarray | None = None,
) -> None:
    """An activation dump of ``maps`` (N, U, h, w) float32 exactly as the spec lays it out."""
    n, u, h, w = maps.shape
    flat = maps.reshape(n, u, -1)
    mx = flat.max(axis=2).astype(np.float32)
    # top-K per unit: max descending, ties -> lower frame first
    order = np.lexsort((np.broadcast_to(np.arange(n), (u, n)), -mx.T), axis=-1)[:, :top_k]
    text = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update(
            model=model, layer=layer, kind=kind, input_size=4 * h, n_frames=n, n_units=u,
            map_height=h, map_width=w, top_k=top_k, stores_maps=store_maps,
            created_by="test", schema="test dump",
        )  # fmt: skip
        f["video_id"] = np.array([f"v{i // 10}" for i in range(n)], dtype=object).astype(text)
        f["frame_index"] = (np.arange(n) % 10).astype(np.int32)
        f["split"] = np.array(["test"] * n, dtype=object).astype(text)
        names = shard_file or ["s000.h5"] * n
        f.create_dataset("shard_file", data=np.array(names, dtype=object), dtype=text)
        f["row"] = (np.arange(n) if rows is None else rows).astype(np.int64)
        f.create_dataset("max", data=mx, compression="lzf")
        f.create_dataset("mean", data=flat.mean(axis=2).astype(np.float32), compression="lzf")
        f.create_dataset("argmax", data=flat.argmax(axis=2).astype(np.int32), compression="lzf")
        if store_maps:
            f.create_dataset("maps", data=maps.astype(np.float16), chunks=(1, u, h, w))
        f["top_index"] = order.astype(np.int64)
        f["top_value"] = np.take_along_axis(mx.T, order, axis=1)
        f["top_maps"] = maps[order, np.arange(u)[:, None]].astype(np.float16)
