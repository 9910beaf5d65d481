"""Per-unit activation dumps (docs/method.md §4, 5): one HDF5 file per layer of a trained model.

For every frame of the chosen splits the file holds, per unit (channel) of the layer after
its ReLU, the map's max, mean and argmax, optionally the float16 map itself, and per unit
its top-K frames by max with their maps. The interpretability analyses (segmentation,
detectors, AU emergence) read these files instead of running the network again.

This module runs the network: one forward pass per batch serves every layer, and the
maps stream into :class:`traitlens.interpret.dump_file.DumpWriter`, which owns the file
format (datasets, schema, writer, readers).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from traitlens.core.errors import UserError
from traitlens.core.faults import kill_point
from traitlens.interpret.dump_file import F16_MAX, DumpWriter
from traitlens.models.dan import CONV_LAYERS, VGG16_BLOCKS, DanPlus

log = logging.getLogger("traitlens.interpret.activation_dump")

POOL_LAYERS = tuple(f"pool{b + 1}" for b in range(len(VGG16_BLOCKS)))
VALID_LAYERS = (*CONV_LAYERS, *POOL_LAYERS)


# --- the dump ----------------------------------------------------------------------------


def check_layers(layers: Sequence[str]) -> list[str]:
    """The layers, checked: UserError naming the unknown ones and the valid names."""
    layers = list(layers)
    unknown = [name for name in layers if name not in VALID_LAYERS]
    if unknown or not layers:
        raise UserError(
            f"config activations.layers: unknown layer(s) {unknown or '(none given)'}; "
            f"valid: {', '.join(VALID_LAYERS)}"
        )
    if len(set(layers)) != len(layers):
        raise UserError(f"config activations.layers: {layers} names a layer twice")
    return layers


def frame_keys(index) -> pd.DataFrame:
    """The key columns of a SampleIndex, in its order."""
    return pd.DataFrame(
        {
            "video_id": index.video_id,
            "frame_index": index.frame_index,
            "split": index.split,
            "shard_file": [Path(index.paths[n]).name for n in index.file],
            "row": index.row,
        }
    )


class _Sink:
    """Runs write jobs in order: in a background thread on CUDA (so HDF5 writes and the
    top-K merge overlap the next forward), inline on the CPU. A failed job's exception is
    raised in the caller at the next submit or at finish."""

    def __init__(self, threaded: bool, depth: int = 2):
        self.error: BaseException | None = None
        self._queue: queue.Queue | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._work, name="dump-writer", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            if self.error is None:  # after a failure keep draining so submit never blocks
                try:
                    job()
                except BaseException as err:  # noqa: BLE001 (re-raised in the caller)
                    self.error = err

    def submit(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        if self._queue is None:
            job()
        else:
            self._queue.put(job)

    def stop(self) -> None:
        """Wait for the jobs submitted so far (or their draining after a failure)."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def finish(self) -> None:
        self.stop()
        if self.error is not None:
            raise self.error


def _device_reductions(a: torch.Tensor, want_f16: bool):
    """(maps as stored, max, mean, argmax) of one layer's (B, U, h, w) activations, on its
    device: NCHW-contiguous float16 (clipped) when ``want_f16``, else float32."""
    a = a.contiguous()  # NCHW (channels_last on CUDA)
    flat = a.flatten(2)
    argmax = flat.argmax(-1)
    mx = flat.gather(-1, argmax[..., None])[..., 0].float()
    mean = flat.mean(-1, dtype=torch.float32)
    # float16 overflow gives inf, clipped back (a bf16 or float32 clamp at 65504 first
    # would not do: bf16 rounds 65504 up to 65536)
    maps = a.half().clamp_max_(F16_MAX) if want_f16 else a.float()
    return maps, mx, mean, argmax.int()


@torch.no_grad()
def dump_activations(
    model: DanPlus,
    kind: str,
    index,
    layers: Sequence[str],
    out_paths: Mapping[str, str | os.PathLike[str]],
    model_name: str,
    top_k: int,
    store_maps: bool,
    batch_size: int,
    run,
) -> dict[str, Path]:
    """Dump ``layers`` of ``model`` for every frame of ``index`` (a SampleIndex) to
    ``out_paths[layer]``; one forward pass per batch serves all layers.

    ``run`` is a visual_model.RunConfig (device, amp = bf16 autocast on CUDA, num_workers,
    threads). ``top_k`` above the number of frames is lowered to it (logged).
    """
    from traitlens.models.train import resolve_device
    from traitlens.models.train_data import sequential_plan
    from traitlens.models.visual_model import model_batches, on_device

    layers = check_layers(layers)
    n = len(index)
    if n == 0:
        raise UserError(f"no frames to dump for the {model_name} model (empty selection)")
    if top_k > n:
        log.info("top_k %d is more than the %d frames dumped; using top_k = %d", top_k, n, n)
        top_k = n
    device = resolve_device(run.device)
    torch.set_num_threads(max(1, run.threads))
    model = on_device(model, device).eval()
    size = model.cfg.input_size
    use_amp = bool(run.amp and device.type == "cuda")
    cuda = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
        probe = model.activations(torch.zeros(1, 3, size, size, device=device), layers)
    keys = frame_keys(index)
    writers: dict[str, DumpWriter] = {}
    sink = _Sink(threaded=cuda)
    try:
        for layer in layers:
            _, units, h, w = probe[layer].shape
            writers[layer] = DumpWriter(
                out_paths[layer],
                model_name,
                layer,
                kind,
                size,
                n,
                units,
                (h, w),
                top_k,
                store_maps,
                keys,
                created_by=f"traitlens.interpret.activation_dump with torch {torch.__version__}",
            )
        del keys, probe
        plan = sequential_plan(n, batch_size)
        batches = model_batches(kind, index, plan, size, device, run)
        for x, _, pos in tqdm(batches, total=len(plan), desc=f"dump {model_name}", unit="batch"):
            start = int(pos[0])
            if not np.array_equal(pos.numpy(), np.arange(start, start + len(pos))):
                raise RuntimeError("dump batches must be consecutive frames")
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                acts = model.activations(x, layers)
            # float16 maps only when stored or when they cross from the GPU (half the bytes)
            parts = {k: _device_reductions(acts[k], store_maps or cuda) for k in layers}
            del acts
            if cuda:
                parts = {k: [_to_host(t) for t in v] for k, v in parts.items()}
                ready = torch.cuda.Event()
                ready.record()
            else:
                ready = None
            sink.submit(_write_job(writers, start, parts, ready))
            kill_point("dump_activations")
        sink.finish()
        for w in writers.values():
            w.close()
    except BaseException:
        sink.stop()  # no job may still be writing when the files go
        for w in writers.values():
            w.abort()
        raise
    return {layer: Path(out_paths[layer]) for layer in layers}


def _to_host(t: torch.Tensor) -> torch.Tensor:
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host


def _write_job(writers, start, parts, ready):
    def job() -> None:
        if ready is not None:
            ready.synchronize()
        for layer, (maps, mx, mean, argmax) in parts.items():
            writers[layer].add(start, maps.numpy(), (mx.numpy(), mean.numpy(), argmax.numpy()))

    return job


def dump_model_files(
    weights: str | os.PathLike[str],
    labels: pd.DataFrame,
    data_paths: Sequence[str],
    layers: Sequence[str],
    out_paths: Sequence[str | os.PathLike[str]],
    model_name: str,
    splits: Sequence[str],
    top_k: int,
    store_maps: bool,
    batch_size: int,
    run,
) -> dict[str, Path]:
    """What the dump_activations rule runs: the trained model of ``weights`` over the
    frames of ``splits`` in the shard files, one output per layer in ``layers`` order."""
    from traitlens.models.predictions import SPLITS
    from traitlens.models.train_data import build_index
    from traitlens.models.visual_model import load_trained

    layers = check_layers(layers)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown or not splits:
        raise UserError(
            f"config activations.splits: unknown split(s) {unknown or '(none given)'}; "
            f"valid: {', '.join(SPLITS)}"
        )
    out_paths = list(out_paths)
    if len(out_paths) != len(layers):
        raise ValueError(f"{len(out_paths)} output paths for {len(layers)} layers")
    model, kind = load_trained(weights)
    index = build_index(kind, data_paths, labels)
    index = index.subset(np.isin(index.split, list(splits)))
    if len(index) == 0:
        raise UserError(
            f"no {kind} frames of the splits {list(splits)} in {len(data_paths)} shard "
            "file(s); check config activations.splits and the QC tables"
        )
    log.info(
        "%s model (%s): %d frames of %s, layers %s", model_name, kind, len(index), splits, layers
    )
    return dump_activations(
        model,
        kind,
        index,
        layers,
        dict(zip(layers, out_paths, strict=True)),
        model_name,
        top_k,
        store_maps,
        batch_size,
        run,
    )
