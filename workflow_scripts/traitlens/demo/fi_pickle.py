"""Annotation pickles written the way First Impressions' own files are.

The real ``annotation_*.pkl`` files are Python 2, protocol-2 pickles of
``{trait: {"<id>.mp4": numpy.float64}}``: keys are Python 2 ``str`` (SHORT_BINSTRING)
and each value is rebuilt through ``numpy.core.multiarray.scalar(dtype('f8'), <str>)``,
which is why they must be read with ``encoding='latin1'``. Python 3's pickler would
write the float's bytes through ``_codecs.encode`` instead; writing the opcodes by hand
keeps the demo files on exactly the path real files take through the loader.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping

_BATCH = 1000  # Python 2's pickler emitted SETITEMS in batches of 1000


def _string(data: bytes) -> bytes:
    if len(data) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(data)]) + data
    return pickle.BINSTRING + struct.pack("<i", len(data)) + data


def _float64(value: float) -> bytes:
    dtype = (
        b"cnumpy\ndtype\n"
        + _string(b"f8")
        + b"K\x00K\x01\x87R"  # dtype('f8', 0, 1)
        + b"(K\x03"
        + _string(b"<")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # __setstate__
    )
    payload = _string(struct.pack("<d", float(value)))
    return b"cnumpy.core.multiarray\nscalar\n" + dtype + payload + b"\x86R"


def _dict(items: list[tuple[bytes, bytes]]) -> bytes:
    out = pickle.EMPTY_DICT
    for i in range(0, len(items), _BATCH):
        out += pickle.MARK + b"".join(k + v for k, v in items[i : i + _BATCH]) + pickle.SETITEMS
    return out


def dumps_labels(labels: Mapping[str, Mapping[str, float]]) -> bytes:
    """Protocol-2 bytes of ``{trait: {file name: value}}`` in Python 2's layout."""
    outer = []
    for trait, videos in labels.items():
        inner = [(_string(name.encode("latin1")), _float64(v)) for name, v in videos.items()]
        outer.append((_string(trait.encode("latin1")), _dict(inner)))
    return pickle.PROTO + b"\x02" + _dict(outer) + pickle.STOP
