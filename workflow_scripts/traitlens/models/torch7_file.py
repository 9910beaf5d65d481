"""A reader of Torch7's binary serialisation (``torch.save(path, object)`` in Lua), as far
as a saved network needs: numbers, strings, booleans, nil, tables, Torch objects (an
``nn`` module is a class name over a table of fields) and float/double tensors.

The format (torch7's ``File:writeObject``): every value starts with a 32-bit type tag.
A table or Torch object then carries a 32-bit reference index; an index seen before means
"the same object again", otherwise the object follows: a table as its pair count and
key/value pairs, a Torch object as its version string (``"V 1"``; absent in the oldest
files), its class name and its own data. A tensor's data is its dimension count, sizes
and strides (64-bit), the 1-based offset into its storage (64-bit) and the storage as an
object; a storage's is its element count (64-bit) and the raw elements. Integers and
floats are little-endian.

Storages are not read into memory when met: a :class:`Storage` remembers where its
elements lie and reads them when a tensor asks (VGG_FACE.t7 is ~580 MB, most of it the
fully connected layers, which the backbone never uses). Functions (Lua bytecode) and
every other class of data are refused, so nothing in a file is ever run.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from traitlens.core.errors import UserError

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN = 0, 1, 2, 3, 4, 5
FUNCTION_TYPES = {6, 7, 8}
# Torch storage class -> element dtype
STORAGE_TYPES = {
    "torch.FloatStorage": np.dtype("<f4"),
    "torch.DoubleStorage": np.dtype("<f8"),
    "torch.LongStorage": np.dtype("<i8"),
    "torch.IntStorage": np.dtype("<i4"),
    "torch.ByteStorage": np.dtype("u1"),
}
TENSOR_TYPES = {name.replace("Storage", "Tensor"): dtype for name, dtype in STORAGE_TYPES.items()}


@dataclass
class Storage:
    """Where a storage's elements lie in the file; read on demand."""

    dtype: np.dtype
    size: int
    offset: int
    path: Path

    def read(self) -> np.ndarray:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size * self.dtype.itemsize)
        if len(data) != self.size * self.dtype.itemsize:
            raise UserError(f"{self.path}: the file ends inside a tensor; it is truncated.")
        return np.frombuffer(data, dtype=self.dtype)


@dataclass
class Tensor:
    """A tensor's view of a storage (sizes, strides, 0-based offset, in elements)."""

    class_name: str
    size: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    storage: Storage | None

    def numpy(self) -> np.ndarray:
        if not self.size or self.storage is None:
            return np.zeros(self.size or (0,), dtype=TENSOR_TYPES[self.class_name])
        data = self.storage.read()
        itemsize = data.dtype.itemsize
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if self.offset < 0 or last >= data.size:
            raise UserError(
                f"{self.storage.path}: a {self.class_name} reaches past its storage; the "
                "file is damaged."
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=[s * itemsize for s in self.stride],
            writeable=False,
        )
        return np.array(view)


@dataclass
class TorchObject:
    """A Torch class instance that is not a tensor or storage: an ``nn`` module."""

    class_name: str
    fields: dict = field(default_factory=dict)


class _Reader:
    def __init__(self, f: BinaryIO, path: Path):
        self.f, self.path = f, path
        self.objects: dict[int, object] = {}

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise UserError(f"{self.path}: the file ends too early; it is truncated.")
        return data

    def int(self) -> int:
        return struct.unpack("<i", self._read(4))[0]

    def long(self) -> int:
        return struct.unpack("<q", self._read(8))[0]

    def text(self) -> str:
        n = self.int()
        if n < 0:
            raise UserError(f"{self.path}: a string of negative length; not a Torch7 file.")
        return self._read(n).decode("latin-1")

    def value(self) -> object:
        kind = self.int()
        if kind == NIL:
            return None
        if kind == NUMBER:
            return struct.unpack("<d", self._read(8))[0]
        if kind == BOOLEAN:
            return self.int() == 1
        if kind == STRING:
            return self.text()
        if kind in (TABLE, TORCH):
            index = self.int()
            if index in self.objects:
                return self.objects[index]
            return self._table(index) if kind == TABLE else self._torch(index)
        if kind in FUNCTION_TYPES:
            raise UserError(
                f"{self.path}: it holds a Lua function, which a saved network of weights "
                "never needs; it was not read (nothing in it runs)."
            )
        raise UserError(
            f"{self.path}: unknown Torch7 type tag {kind} at byte {self.f.tell() - 4}; "
            "not a binary Torch7 file."
        )

    def _table(self, index: int) -> dict:
        table: dict = {}
        self.objects[index] = table
        for _ in range(self.int()):
            key = self.value()
            table[key] = self.value()
        return table

    def _torch(self, index: int) -> object:
        version = self.text()
        class_name = self.text() if version.startswith("V ") else version
        if class_name in STORAGE_TYPES:
            dtype = STORAGE_TYPES[class_name]
            size = self.long()
            storage = Storage(dtype, size, self.f.tell(), self.path)
            self.f.seek(size * dtype.itemsize, 1)
            self.objects[index] = storage
            return storage
        if class_name in TENSOR_TYPES:
            n_dims = self.int()
            size = tuple(self.long() for _ in range(n_dims))
            stride = tuple(self.long() for _ in range(n_dims))
            offset = self.long() - 1  # stored 1-based
            tensor = Tensor(class_name, size, stride, offset, None)
            self.objects[index] = tensor
            tensor.storage = self.value()  # type: ignore[assignment]
            if tensor.storage is not None and not isinstance(tensor.storage, Storage):
                raise UserError(f"{self.path}: a {class_name} without a storage; damaged file.")
            return tensor
        if class_name.endswith(("Tensor", "Storage")):
            raise UserError(
                f"{self.path}: it holds a {class_name}; only float and double CPU tensors "
                "can be read. Save the network after net:float() (in Lua) and try again."
            )
        obj = TorchObject(class_name)
        self.objects[index] = obj
        fields = self.value()
        if not isinstance(fields, dict):
            raise UserError(f"{self.path}: the {class_name} object has no field table.")
        obj.fields = fields
        return obj


def read_torch7(path: str | Path) -> object:
    """The object saved in a binary Torch7 file, as plain values, :class:`TorchObject`,
    :class:`Tensor` and :class:`Storage`. Raises UserError for anything else."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:2] in (b"4\n", b"3\n"):
            raise UserError(
                f"{path}: a Torch7 file in ASCII mode; only the binary mode that "
                "torch.save writes by default can be read. Re-save it in binary."
            )
        if len(head) < 8 or struct.unpack("<i", head[:4])[0] not in (TABLE, TORCH):
            raise UserError(
                f"{path}: not a binary Torch7 file (it does not start with a saved table or "
                "Torch object)."
            )
        f.seek(0)
        return _Reader(f, path).value()
