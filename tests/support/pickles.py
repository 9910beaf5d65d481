"""Hand-built pickles for tests: Python 2 label files and a code-running payload."""

from __future__ import annotations

import struct


def _short_binstring(data: bytes) -> bytes:
    # Protocol 2 SHORT_BINSTRING ('U'): a Python 2 str, which Python 3 reads through
    # the `encoding` argument (latin1 for label files).
    assert len(data) < 256
    return b"U" + bytes([len(data)]) + data


def _np_float64(value: float) -> bytes:
    """Opcodes that rebuild numpy.float64(value) the way Python 2 numpy pickled it."""
    dtype = (
        b"cnumpy\ndtype\n"
        + _short_binstring(b"f8")
        + b"K\x00K\x01\x87R"  # dtype('f8', 0, 1)
        + b"(K\x03"
        + _short_binstring(b"<")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    )
    return (
        b"cnumpy.core.multiarray\nscalar\n"
        + dtype
        + _short_binstring(struct.pack("<d", value))
        + b"\x86R"
    )


def python2_label_pickle(labels: dict[str, dict[str, float]]) -> bytes:
    """A protocol-2 pickle as Python 2 wrote First Impressions' annotation files:
    {trait: {video_file: numpy.float64}} with str keys."""
    out = [b"\x80\x02}("]  # a list joined once: += on bytes is quadratic for 10k videos
    for trait, videos in labels.items():
        out.append(_short_binstring(trait.encode("latin1")) + b"}(")
        for name, value in videos.items():
            out.append(_short_binstring(name.encode("latin1")) + _np_float64(value))
        out.append(b"u")
    return b"".join([*out, b"u."])


def code_running_pickle(marker_path: str) -> bytes:
    """A pickle whose loading would create ``marker_path`` through os.system."""
    command = f"touch {marker_path}".encode()
    return b"cos\nsystem\n(" + _short_binstring(command) + b"tR."
