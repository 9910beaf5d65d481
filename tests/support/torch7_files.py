"""Torch7 binary files written byte for byte as Lua Torch's ``torch.save`` writes them, and
a VGG-Face network in the layout of the authors' Torch release (VGG_FACE.t7) at a small
width, so the converter is tested on the container it will meet.

The serialisation (torch7 File.lua ``writeObject``, little-endian): a 32-bit type tag
(0 nil, 1 number, 2 string, 3 table, 4 Torch object, 5 boolean); a number is a double; a
boolean a 32-bit 0/1; a string its 32-bit length and bytes. A table or Torch object has a
32-bit reference index; an object written before is only its index again. A table then
holds its pair count and key/value pairs (a Lua list's keys are the numbers 1..n); a
Torch object its version (``"V 1"``), class name and data: a module's field table; a
tensor its 32-bit dimension count, 64-bit sizes, strides and 1-based storage offset and
its storage as an object (nil when empty); a storage its 64-bit length and raw elements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
VGG19_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
_TENSOR = {np.dtype("float32"): "torch.FloatTensor", np.dtype("float64"): "torch.DoubleTensor"}


@dataclass(eq=False)
class TorchClass:
    """A Torch class instance saved as its field table (every ``nn`` module)."""

    class_name: str
    fields: dict = field(default_factory=dict)


@dataclass(eq=False)
class LongStorage:
    """A torch.LongStorage (nn.View keeps its sizes in one)."""

    values: list[int]


@dataclass(eq=False)
class _Storage:
    """A tensor's storage: an object of its own in the file."""

    data: np.ndarray


class _Writer:
    def __init__(self, f: BinaryIO):
        self.f = f
        self.seen: dict[int, int] = {}
        self.alive: list[object] = []  # ids stay unique while the file is written

    def int(self, v: int) -> None:
        self.f.write(struct.pack("<i", v))

    def long(self, v: int) -> None:
        self.f.write(struct.pack("<q", v))

    def text(self, s: str) -> None:
        data = s.encode("latin-1")
        self.int(len(data))
        self.f.write(data)

    def _reference(self, obj: object) -> bool:
        """Write the object's index; True when it was written before (nothing follows)."""
        if id(obj) in self.seen:
            self.int(self.seen[id(obj)])
            return True
        self.seen[id(obj)] = len(self.seen) + 1
        self.alive.append(obj)
        self.int(self.seen[id(obj)])
        return False

    def _torch_header(self, class_name: str) -> None:
        self.text("V 1")
        self.text(class_name)

    def value(self, v: object) -> None:
        if v is None:
            self.int(0)
        elif isinstance(v, bool):
            self.int(5)
            self.int(1 if v else 0)
        elif isinstance(v, int | float):
            self.int(1)
            self.f.write(struct.pack("<d", float(v)))
        elif isinstance(v, str):
            self.int(2)
            self.text(v)
        elif isinstance(v, dict | list):
            self.int(3)
            if not self._reference(v):
                pairs = v.items() if isinstance(v, dict) else enumerate(v, start=1)
                pairs = list(pairs)
                self.int(len(pairs))
                for key, item in pairs:
                    self.value(key)
                    self.value(item)
        elif isinstance(v, TorchClass):
            self.int(4)
            if not self._reference(v):
                self._torch_header(v.class_name)
                self.value(v.fields)
        elif isinstance(v, LongStorage):
            self.int(4)
            if not self._reference(v):
                self._torch_header("torch.LongStorage")
                self.long(len(v.values))
                self.f.write(np.asarray(v.values, dtype="<i8").tobytes())
        elif isinstance(v, np.ndarray):
            self._tensor(v)
        else:
            raise TypeError(f"cannot write {type(v).__name__} as Torch7")

    def _tensor(self, array: np.ndarray) -> None:
        self.int(4)
        if self._reference(array):
            return
        class_name = _TENSOR[array.dtype]
        self._torch_header(class_name)
        if array.size == 0:  # torch.FloatTensor(): no dimensions, no storage
            self.int(0)
            self.long(1)
            self.value(None)
            return
        data = np.ascontiguousarray(array)
        self.int(data.ndim)
        for n in data.shape:
            self.long(n)
        for s in data.strides:
            self.long(s // data.itemsize)
        self.long(1)
        self.int(4)  # the storage, a Torch object of its own
        self._reference(_Storage(data))
        self._torch_header(class_name.replace("Tensor", "Storage"))
        self.long(data.size)
        self.f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())


def write_t7(path: Path, obj: object) -> Path:
    """``obj`` saved as Lua's torch.save(path, obj) saves it in binary mode."""
    with open(path, "wb") as f:
        _Writer(f).value(obj)
    return path


def _empty() -> np.ndarray:
    return np.zeros(0, np.float32)


def _module(class_name: str, **fields) -> TorchClass:
    base = {"output": _empty(), "gradInput": _empty(), "train": False, "_type": "torch.FloatTensor"}
    return TorchClass(class_name, {**base, **fields})


def vgg_face_t7(
    path: Path,
    width_divisor: int = 16,
    seed: int = 0,
    *,
    blocks=VGG16_BLOCKS,
    conv_class: str = "nn.SpatialConvolutionMM",
    weight_2d: bool = True,
    kernel: int = 3,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """VGG_FACE.t7's network at widths / ``width_divisor``: an nn.Sequential of 13
    SpatialConvolutionMM (weights Out x In*kH*kW) with ReLUs and 5 max pools, then View,
    Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear (2622 identities / divisor) and
    SoftMax. Returns the conv filters as the file holds them: {conv1_1: (Out x In x kH x
    kW, Out)}, input channels in the file's (BGR) order. ``blocks``, ``kernel`` and the
    conv class make files that are not VGG16 or that newer Torch writes (4-d weights)."""
    rng = np.random.default_rng(seed)
    modules, filters = [], {}
    in_ch = 3
    for b, (n_convs, width) in enumerate(blocks):
        out_ch = max(1, width // width_divisor)
        for i in range(n_convs):
            weight = rng.normal(0, 0.1, (out_ch, in_ch, kernel, kernel)).astype(np.float32)
            bias = rng.normal(0, 0.1, out_ch).astype(np.float32)
            filters[f"conv{b + 1}_{i + 1}"] = (weight, bias)
            stored = weight.reshape(out_ch, -1) if weight_2d else weight
            modules.append(
                _module(
                    conv_class,
                    nInputPlane=in_ch,
                    nOutputPlane=out_ch,
                    kW=kernel,
                    kH=kernel,
                    dW=1,
                    dH=1,
                    padW=1,
                    padH=1,
                    weight=stored,
                    bias=bias,
                    gradWeight=_empty(),
                    gradBias=_empty(),
                    finput=_empty(),
                    fgradInput=_empty(),
                )  # fmt: skip
            )
            modules.append(_module("nn.ReLU", threshold=0, val=0, inplace=True))
            in_ch = out_ch
        modules.append(
            _module(
                "nn.SpatialMaxPooling",
                kW=2,
                kH=2,
                dW=2,
                dH=2,
                padW=0,
                padH=0,
                ceil_mode=False,
                indices=_empty(),
            )  # fmt: skip
        )
    fc_in, fc = in_ch * 7 * 7, max(1, 4096 // width_divisor)
    modules.append(_module("nn.View", size=LongStorage([fc_in]), numElements=fc_in))
    for n_in, n_out in ((fc_in, fc), (fc, fc), (fc, max(1, 2622 // width_divisor))):
        weight = rng.normal(0, 0.01, (n_out, n_in)).astype(np.float32)
        bias = np.zeros(n_out, np.float32)
        modules.append(
            _module("nn.Linear", weight=weight, bias=bias, gradWeight=_empty(), gradBias=_empty())
        )
        if n_out == fc:
            modules.append(_module("nn.ReLU", threshold=0, val=0, inplace=True))
            modules.append(_module("nn.Dropout", p=0.5, v2=True, noise=_empty()))
    last = _module("nn.SoftMax")
    modules.append(last)
    # the container's output is its last module's: written once, then by reference
    net = _module("nn.Sequential", modules=modules)
    net.fields["output"] = last.fields["output"]
    write_t7(path, net)
    return filters
