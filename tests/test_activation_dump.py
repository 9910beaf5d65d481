"""Activation dumps (traitlens.interpret.activation_dump, the dump_activations rule).

The writer against numpy computed over all the maps at once: reductions, stored maps,
the top-K per unit (brute-force argsort, ties included, batches splitting the data
unevenly); its memory measured at two data sizes; atomic output; the readers' refusals of
bad files; and the whole dump (one forward pass for all layers) of a tiny DAN+ over
tiny shard files, against the model's own activations, through the entry script.
"""

from __future__ import annotations

import runpy
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from traitlens.core.errors import UserError
from traitlens.ingest.labels import BIG_FIVE
from traitlens.interpret.activation_dump import (
    VALID_LAYERS,
    _device_reductions,
    _Sink,
    check_layers,
    dump_activations,
)
from traitlens.interpret.dump_file import (
    ATTRS,
    F16_MAX,
    SCHEMA,
    DumpWriter,
    dump_info,
    iter_maps,
    read_keys,
    read_reduction,
    read_top,
    reduce_maps,
)
from traitlens.models.dan import DanConfig, DanPlus
from traitlens.models.pixel_reader import PixelReader
from traitlens.models.train_data import build_index, resize_batch
from traitlens.models.visual_model import RunConfig, save_weights

from support.workflow import REPO

CPU = RunConfig(device="cpu", amp=False, num_workers=0, threads=1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def keys_for(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video_id": [f"vid{i // 4:03d}" for i in range(n)],
            "frame_index": np.arange(n, dtype=np.int32) % 4 * 10,
            "split": np.where(np.arange(n) % 3 == 0, "test", "train"),
            "shard_file": [f"s{i % 2:03d}.h5" for i in range(n)],
            "row": np.arange(n, dtype=np.int64) // 2,
        }
    )


def write_dump(path, maps, batches, top_k, store_maps=True, reductions=None) -> None:
    """maps (N, U, h, w) fed in consecutive batches of the given sizes."""
    n, u, h, w = maps.shape
    assert sum(batches) == n
    with DumpWriter(
        path, "face", "conv5_3", "face", 32, n, u, (h, w), top_k, store_maps, keys_for(n)
    ) as writer:
        start = 0
        for b in batches:
            red = None if reductions is None else [r[start : start + b] for r in reductions]
            writer.add(start, maps[start : start + b], red)
            start += b


def tied_maps(n: int, u: int, h: int, w: int, seed: int) -> np.ndarray:
    """Small integers: many frames share a unit's max, and maps hold repeated maxima."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 6, size=(n, u, h, w)).astype(np.float32)


# --- the writer --------------------------------------------------------------------------


def test_reductions_maps_and_keys_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    maps = (rng.random((37, 5, 3, 4)) * 10).astype(np.float32)
    maps[4, 2] = 0.0
    maps[4, 2, 1, 3] = maps[4, 2, 2, 0] = 7.0  # two equal maxima: the first (1*4+3) counts
    path = tmp_path / "conv5_3.h5"
    write_dump(path, maps, [10, 3, 7, 17], top_k=4)

    flat = maps.reshape(37, 5, 12)
    np.testing.assert_array_equal(read_reduction(path, "max"), flat.max(-1))
    np.testing.assert_allclose(read_reduction(path, "mean"), flat.mean(-1), rtol=1e-6)
    argmax = read_reduction(path, "argmax")
    assert argmax.dtype == np.int32
    np.testing.assert_array_equal(argmax, flat.argmax(-1))
    assert argmax[4, 2] == 7
    stored = np.concatenate([m for _, m in iter_maps(path, chunk_frames=8)])
    np.testing.assert_array_equal(stored, maps.astype(np.float16).astype(np.float32))
    assert [s for s, _ in iter_maps(path, 8)] == [0, 8, 16, 24, 32]
    pd.testing.assert_frame_equal(read_keys(path), keys_for(37))
    info = dump_info(path)
    assert set(ATTRS) <= set(info)
    assert info["n_frames"] == 37 and info["n_units"] == 5 and info["stores_maps"] is True
    assert (info["map_height"], info["map_width"], info["top_k"]) == (3, 4, 4)
    assert (info["model"], info["layer"], info["kind"], info["input_size"]) == (
        "face",
        "conv5_3",
        "face",
        32,
    )
    # the schema documents every dataset and attribute the file holds
    with h5py.File(path) as f:
        names = list(f) + list(f.attrs)
        assert f["max"].compression == "lzf" and f["maps"].compression is None
    assert all(name in SCHEMA for name in names)


@pytest.mark.parametrize(
    ("n", "batches", "top_k"),
    [
        (40, [1, 6, 13, 2, 18], 5),
        (40, [40], 5),
        (23, [4, 4, 4, 4, 4, 3], 23),  # K = N: every frame, ranked
        (23, [7, 16], 1),
    ],
)
def test_top_k_equals_brute_force_with_ties(tmp_path, n, batches, top_k):
    maps = tied_maps(n, 6, 2, 3, seed=n + top_k)
    path = tmp_path / "d.h5"
    write_dump(path, maps, batches, top_k)
    top_index, top_value, top_maps = read_top(path)

    mx = maps.reshape(n, 6, -1).max(-1)
    positions = np.arange(n)
    for u in range(6):
        expected = np.lexsort((positions, -mx[:, u]))[:top_k]  # value desc, position asc
        np.testing.assert_array_equal(top_index[u], expected)
        np.testing.assert_array_equal(top_value[u], mx[expected, u])
        # ties are present and broken by position
        assert len(np.unique(mx[:, u])) < n
    stored = np.concatenate([m for _, m in iter_maps(path, 64)])
    for u in range(6):
        np.testing.assert_array_equal(top_maps[u], stored[top_index[u], u])


def test_top_k_from_given_reductions_and_float16_maps(tmp_path):
    """The GPU path hands float16 maps with reductions computed on the device."""
    maps = tied_maps(30, 4, 2, 2, seed=3)
    flat = maps.reshape(30, 4, -1)
    red = (flat.max(-1), flat.mean(-1), flat.argmax(-1).astype(np.int32))
    path = tmp_path / "d.h5"
    write_dump(path, maps.astype(np.float16), [9, 9, 9, 3], top_k=3, reductions=red)
    top_index, _, top_maps = read_top(path)
    for u in range(4):
        expected = np.lexsort((np.arange(30), -red[0][:, u]))[:3]
        np.testing.assert_array_equal(top_index[u], expected)
        np.testing.assert_array_equal(top_maps[u], maps[expected, u])
    np.testing.assert_array_equal(read_reduction(path, "mean"), red[1])


def test_without_maps_top_maps_still_stored_and_f16_clipped(tmp_path):
    maps = tied_maps(12, 2, 2, 2, seed=5)
    maps[3, 1, 0, 0] = 1e6  # beyond float16: clipped, not inf
    path = tmp_path / "d.h5"
    write_dump(path, maps, [5, 7], top_k=2, store_maps=False)
    with h5py.File(path) as f:
        assert "maps" not in f and not f.attrs["stores_maps"]
    top_index, top_value, top_maps = read_top(path)
    assert top_index[1, 0] == 3 and top_value[1, 0] == 1e6
    assert top_maps[1, 0, 0, 0] == F16_MAX and np.isfinite(top_maps).all()
    for u in range(2):
        expected = np.minimum(maps[top_index[u], u], F16_MAX).astype(np.float16)
        np.testing.assert_array_equal(top_maps[u], expected)
    with pytest.raises(UserError, match="store_maps"):
        next(iter_maps(path, 4))


def _writer_peak(tmp_path: Path, n: int) -> tuple[int, int]:
    """(tracemalloc peak over adds + close, bytes of the writer's numpy arrays)."""
    u, h, w, batch = 128, 4, 4, 50
    rng = np.random.default_rng(0)
    writer = DumpWriter(
        tmp_path / f"m{n}.h5", "face", "conv5_3", "face", 32, n, u, (h, w), 8, True, keys_for(n)
    )
    tracemalloc.start()
    try:
        for start in range(0, n, batch):
            b = min(batch, n - start)
            writer.add(start, rng.random((b, u, h, w), dtype=np.float32))
        writer.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    held = sum(v.nbytes for v in vars(writer).values() if isinstance(v, np.ndarray))
    held += sum(v.nbytes for v in writer._buffer.values())
    return peak, held


def test_writer_memory_does_not_grow_with_frames(tmp_path):
    """At 3,000 and 12,000 frames of 128 units, one float32 reduction held for every frame
    would add 4.6 MB; the measured peak must stay flat and the held arrays equal."""
    peak_small, held_small = _writer_peak(tmp_path, 3000)
    peak_large, held_large = _writer_peak(tmp_path, 12000)
    assert held_small == held_large
    assert peak_large - peak_small < 1_000_000, (peak_small, peak_large)
    assert peak_large < 12000 * 128 * 4  # less than one (N, U) float32 array


def test_device_reductions_equal_numpy_and_clip_float16():
    """What dump_activations computes on the device (bf16 under autocast on CUDA) against
    the writer's numpy reductions; argmax ties -> first, float16 overflow -> 65504."""
    maps = tied_maps(9, 3, 3, 4, seed=2)
    maps[2, 1, 0, 1] = 98304.0  # 1.5 * 2**16: beyond float16, exact in bfloat16
    for dtype in (torch.float32, torch.bfloat16):  # small integers: exact in bf16
        t = torch.from_numpy(maps).to(dtype).contiguous(memory_format=torch.channels_last)
        stored, mx, mean, argmax = _device_reductions(t, want_f16=True)
        want = reduce_maps(maps)
        np.testing.assert_array_equal(mx.numpy(), want[0])
        np.testing.assert_allclose(mean.numpy(), want[1], rtol=1e-6)
        np.testing.assert_array_equal(argmax.numpy(), want[2])
        assert stored.dtype == torch.float16 and stored.is_contiguous()
        np.testing.assert_array_equal(stored.numpy(), np.minimum(maps, F16_MAX).astype(np.float16))
    assert _device_reductions(torch.from_numpy(maps), want_f16=False)[0].dtype == torch.float32


def test_background_sink_runs_jobs_in_order_and_reports_a_failure():
    done = []
    sink = _Sink(threaded=True, depth=1)
    for i in range(5):
        sink.submit(lambda i=i: done.append(i))
    sink.finish()
    assert done == [0, 1, 2, 3, 4]

    def fail():
        raise OSError("disk full")

    sink = _Sink(threaded=True, depth=1)
    sink.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        for i in range(50):  # the failure surfaces at a later submit, never a hang
            sink.submit(lambda i=i: done.append(i))
        sink.finish()
    sink.stop()
    assert done == [0, 1, 2, 3, 4]  # nothing ran after the failed job


# --- atomic output -----------------------------------------------------------------------


def test_exception_inside_with_leaves_no_file(tmp_path):
    maps = tied_maps(10, 2, 2, 2, seed=0)
    path = tmp_path / "out" / "conv5_3.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with DumpWriter(
            path, "face", "conv5_3", "face", 32, 10, 2, (2, 2), 3, True, keys_for(10)
        ) as writer:
            writer.add(0, maps[:5])
            raise RuntimeError("boom")
    assert list(path.parent.iterdir()) == []


def test_incomplete_or_out_of_order_dump_is_refused_and_removed(tmp_path):
    maps = tied_maps(10, 2, 2, 2, seed=0)
    path = tmp_path / "conv5_3.h5"
    writer = DumpWriter(path, "face", "conv5_3", "face", 32, 10, 2, (2, 2), 3, True, keys_for(10))
    writer.add(0, maps[:4])
    with pytest.raises(ValueError, match="expected frame 4"):
        writer.add(5, maps[5:])
    with pytest.raises(ValueError, match="4 of 10 frames"):
        writer.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="aborted"):  # no silent success afterwards
        writer.close()
    # a complete one appears under its name, with no temporary file left beside it
    write_dump(path, maps, [4, 6], top_k=3)
    assert [p.name for p in tmp_path.iterdir()] == ["conv5_3.h5"]


# --- reader refusals ---------------------------------------------------------------------


def test_readers_refuse_truncated_foreign_and_incomplete_files(tmp_path):
    good = tmp_path / "good.h5"
    write_dump(good, tied_maps(20, 3, 2, 2, seed=0), [20], top_k=2)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("frames", data=np.zeros((2, 4, 4, 3), np.uint8))
    no_attrs = tmp_path / "no_attrs.h5"
    with h5py.File(good) as src, h5py.File(no_attrs, "w") as dst:
        for name in src:
            src.copy(name, dst)
    readers = [
        read_keys,
        read_top,
        dump_info,
        lambda p: read_reduction(p, "max"),
        lambda p: next(iter_maps(p, 4)),
    ]
    for bad in (truncated, foreign, no_attrs):
        for reader in readers:
            with pytest.raises(UserError) as err:
                reader(bad)
            assert str(bad) in str(err.value) and "dump_activations" in str(err.value)
    with pytest.raises(UserError, match="attribute"):
        read_top(no_attrs)


def test_unknown_layer_lists_the_valid_ones():
    assert check_layers(["conv4_3", "pool5"]) == ["conv4_3", "pool5"]
    with pytest.raises(UserError) as err:
        check_layers(["conv4_3", "conv6_1"])
    assert "conv6_1" in str(err.value) and "conv5_3" in str(err.value)
    assert "pool5" in str(err.value)
    assert {"conv1_1", "conv5_3", "pool1", "pool5"} <= set(VALID_LAYERS)


# --- the whole dump ----------------------------------------------------------------------


def write_frames_shard(path: Path, video_ids: list[str], per_video: int, seed: int) -> Path:
    n = len(video_ids) * per_video
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "frames",
            data=rng.integers(0, 256, (n, 24, 40, 3), dtype=np.uint8),
            chunks=(1, 24, 40, 3),
        )
        f.create_dataset("video_index", data=np.repeat(np.arange(len(video_ids)), per_video))
        f.create_dataset("frame_index", data=np.tile(np.arange(per_video) * 15, len(video_ids)))
        f.create_dataset(
            "video_id", data=np.array(video_ids, dtype=object), dtype=h5py.string_dtype()
        )
    return path


@pytest.fixture
def tiny_data(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    shards = [
        write_frames_shard(frames / "s000.h5", ["a", "b", "c"], 4, seed=0),
        write_frames_shard(frames / "s001.h5", ["d", "e"], 4, seed=1),
    ]
    labels = pd.DataFrame(
        {"video_id": list("abcde"), "split": ["train", "validation", "test", "train", "test"]}
    )
    for k, trait in enumerate(BIG_FIVE):
        labels[trait] = np.linspace(0.2, 0.8, 5) + 0.01 * k
    torch.manual_seed(0)
    model = DanPlus(DanConfig(width_divisor=64, input_size=32, input_scale=1 / 64)).eval()
    return tmp_path, [str(p) for p in shards], labels, model


def direct_activations(model, index, positions, layers) -> dict[str, np.ndarray]:
    reader = PixelReader("img", index.paths)
    pixels = reader.read(index.file[positions], index.row[positions])
    reader.close()
    with torch.no_grad():
        acts = model.activations(resize_batch(pixels, 32).float(), layers)
    return {k: v.numpy() for k, v in acts.items()}


def test_dump_activations_equals_the_models_activations(tiny_data):
    tmp_path, shards, labels, model = tiny_data
    layers = ["conv4_3", "conv5_1", "conv5_3"]
    index = build_index("img", shards, labels)
    index = index.subset(np.isin(index.split, ["train", "test"]))
    assert len(index) == 16
    out = {layer: tmp_path / "activations" / "img" / f"{layer}.h5" for layer in layers}
    got = dump_activations(model, "img", index, layers, out, "img", 5, True, 6, CPU)
    assert got == out

    direct = direct_activations(model, index, np.arange(16), layers)
    for layer in layers:
        a = direct[layer]  # (16, U, h, w) float32
        info = dump_info(out[layer])
        assert (info["n_units"], info["map_height"], info["map_width"]) == a.shape[1:]
        mx = read_reduction(out[layer], "max")
        np.testing.assert_allclose(mx, a.max(axis=(2, 3)), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            read_reduction(out[layer], "mean"), a.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6
        )
        maps = np.concatenate([m for _, m in iter_maps(out[layer], 16)])
        np.testing.assert_allclose(maps, a, rtol=1e-3, atol=1e-3)  # float16
        top_index, top_value, _ = read_top(out[layer])
        for u in range(a.shape[1]):
            np.testing.assert_array_equal(top_index[u], np.lexsort((np.arange(16), -mx[:, u]))[:5])
        assert a.max() > 0  # not a dead network
    keys = read_keys(out["conv5_3"])
    assert keys["video_id"].tolist() == [v for v in "acde" for _ in range(4)]
    assert set(keys["split"]) == {"train", "test"}
    assert keys["shard_file"].tolist() == ["s000.h5"] * 8 + ["s001.h5"] * 8
    assert keys["row"].tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5, 6, 7]
    assert keys["frame_index"].tolist() == [0, 15, 30, 45] * 4
    assert not list((tmp_path / "activations" / "img").glob(".tmp-*"))


def run_entry_script(tmp_path, shards, weights, layers, outputs, top_k, splits=("validation",)):
    sm = SimpleNamespace(
        input=SimpleNamespace(
            weights=str(weights), labels=str(tmp_path / "manifest.tsv"), data=shards
        ),
        output=SimpleNamespace(dumps=[str(p) for p in outputs]),
        params=SimpleNamespace(
            layers=layers,
            splits=list(splits),
            top_k=top_k,
            store_maps=False,
            amp=True,
        ),
        wildcards=SimpleNamespace(dumped="img"),
        threads=1,
        config={
            "train": {"device": "cpu", "num_workers": 0},
            "activations": {"batch_size": 3},
        },
        log=[str(tmp_path / "dump.log")],
    )
    runpy.run_path(
        str(REPO / "workflow_scripts" / "dump_activations.py"), init_globals={"snakemake": sm}
    )


@pytest.mark.usefixtures("restore_logging")
def test_entry_script_selects_splits_and_clamps_top_k(tiny_data):
    tmp_path, shards, labels, model = tiny_data
    labels.assign(path="x.mp4", shard="s000").to_csv(
        tmp_path / "manifest.tsv", sep="\t", index=False
    )
    weights = tmp_path / "weights.pt"
    save_weights(model, "img", weights)
    outputs = [tmp_path / "act" / "pool5.h5", tmp_path / "act" / "conv4_2.h5"]
    run_entry_script(tmp_path, shards, weights, ["pool5", "conv4_2"], outputs, top_k=50)
    info = dump_info(outputs[0])
    assert info["layer"] == "pool5" and info["n_frames"] == 4 and info["top_k"] == 4
    assert info["stores_maps"] is False and info["map_height"] == 1
    assert dump_info(outputs[1])["layer"] == "conv4_2"
    assert set(read_keys(outputs[1])["video_id"]) == {"b"}
    assert "top_k 50 is more than the 4 frames" in (tmp_path / "dump.log").read_text()
    direct = direct_activations(
        model, build_index("img", shards, labels), np.arange(4, 8), ["conv4_2"]
    )
    np.testing.assert_allclose(
        read_reduction(outputs[1], "max"), direct["conv4_2"].max(axis=(2, 3)), rtol=1e-5
    )
    # an unknown layer: a clean message (exit 1), no traceback, no output
    with pytest.raises(SystemExit) as stop:
        run_entry_script(tmp_path, shards, weights, ["conv9_9"], [tmp_path / "x.h5"], 5)
    assert stop.value.code == 1
    assert "conv9_9" in (tmp_path / "dump.log").read_text()
    with pytest.raises(SystemExit):
        run_entry_script(tmp_path, shards, weights, ["pool5"], [tmp_path / "x.h5"], 5, ["valid"])
    assert "unknown split(s) ['valid']" in (tmp_path / "dump.log").read_text()
    assert not (tmp_path / "x.h5").exists()
