"""VGG-Face (Parkhi, Vedaldi, Zisserman, BMVC 2015), as its authors publish it, converted
into the backbone weights file :mod:`traitlens.models.weights` loads (README "Starting
from VGG-Face"; run once by tools/convert_vggface.py).

The releases read, told apart by their first bytes:

- **MatConvNet** (``vgg_face.mat`` of the authors' package, ``vgg-face.mat`` of
  MatConvNet's model zoo; the paper's authors used this one). A SimpleNN net: a cell
  array ``layers`` of structs whose ``type`` is ``conv`` / ``relu`` / ``pool`` /
  ``softmax``; a conv layer holds ``weights = {filters, biases}`` (older files:
  ``filters`` and ``biases`` fields), filters H x W x In x Out; fc6-fc8 are conv layers
  too. The input normalisation is ``meta.normalization.averageImage`` (older files:
  ``normalization.averageImage``), the mean RGB pixel. The variables lie at the top of
  the file or inside a struct ``net``. A DagNN net (``params`` with ``name`` / ``value``,
  the layers' ``params`` naming them, e.g. ``conv1_1f`` / ``conv1_1b``) is read too.
  Input: RGB, 0..255, minus the mean.
- **Torch7** (``VGG_FACE.t7``, converted by the authors from their Caffe release). An
  ``nn.Sequential`` of ``nn.SpatialConvolutionMM`` (weight Out x (In*kH*kW), or 4-d in
  newer Torch), ``nn.ReLU``, ``nn.SpatialMaxPooling``, ``nn.View``, ``nn.Linear``,
  ``nn.Dropout``, ``nn.SoftMax``. Its first layer takes **BGR** pixels, as Caffe's
  does, 0..255 minus the mean; the file holds no mean, so the one the MatConvNet
  release records is used (the Caffe release's demo subtracts it in RGB before
  reordering the channels to BGR).
- The Caffe release (``.caffemodel``) is not read: use one of the two above.

Our models take RGB pixels 0..255 (traitlens.models.pixel_reader, then ``(pixel -
models.visual.mean_rgb) * input_scale``), so conv1_1's input channels are reversed where
the source takes BGR. The output holds only the 13 conv layers (DAN+ drops fc6-fc8) and
what input the filters expect::

    {"format": "traitlens-vgg-face-1",
     "state_dict": {"conv1_1.weight": Out x In x 3 x 3, "conv1_1.bias": Out, ...},
     "input": {"channels": "RGB", "mean_rgb": [r, g, b], "input_scale": 1.0,
               "pixel_range": [0, 255], "source": "..."},
     "source": {"file", "format", "channels", "mean_from", "width_divisor"}}

plain values and tensors only, so it loads with ``torch.load(weights_only=True)``. A file
that is not VGG16 (another count of conv layers, other kernels or widths, pools in other
places) is refused, naming the file and what differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from traitlens.core.atomic import atomic_path
from traitlens.core.errors import UserError
from traitlens.models.dan import CONV_LAYERS, VGG16_BLOCKS, VGG_FACE_MEAN, DanConfig
from traitlens.models.torch7_file import TABLE, TORCH, TorchObject, read_torch7
from traitlens.models.torch7_file import Tensor as T7Tensor
from traitlens.models.weights import CONVERTED_VGG_FACE, expected_shapes

log = logging.getLogger("traitlens")

# a binary Torch7 file starts with the type tag of a table or Torch object
T7_START = (TABLE, TORCH)
# the number of convs before each of VGG16's five max pools
POOLS_AFTER = tuple(int(n) for n in np.cumsum([n for n, _ in VGG16_BLOCKS]))


@dataclass
class Conv:
    """One conv layer of the source: weight Out x In x kH x kW in the source's channel
    order (rows of the kernel first: y, then x), bias Out."""

    name: str
    weight: np.ndarray
    bias: np.ndarray


@dataclass
class Source:
    """A release's backbone: its conv layers in network order, the number of convs before
    each max pool, and the input its first layer takes."""

    format: str
    convs: list[Conv]
    pools_after: list[int]
    channels: str  # "RGB" | "BGR"
    mean_rgb: tuple[float, float, float]
    mean_from: str


def convert_vgg_face(source_path: str | Path, output_path: str | Path) -> dict:
    """Convert a VGG-Face release (.mat or .t7) into ``output_path``; returns what was
    written, without the tensors (for the command's summary)."""
    source_path, output_path = Path(source_path), Path(output_path)
    source = read_source(source_path)
    divisor = check_vgg16(source, source_path)
    state = state_dict(source)
    meta = {
        "file": source_path.name,
        "format": source.format,
        "channels": source.channels,
        "mean_from": source.mean_from,
        "width_divisor": divisor,
    }
    expects = {
        "channels": "RGB",
        "mean_rgb": [float(v) for v in source.mean_rgb],
        "input_scale": 1.0,
        "pixel_range": [0, 255],
        "source": f"VGG-Face, {source.format}, from {source_path.name}",
    }
    write_converted(output_path, state, expects, meta)
    log.info(
        "%s: %d conv layers of %s (%s input%s), width_divisor %d -> %s",
        source_path,
        len(source.convs),
        source.format,
        source.channels,
        ", conv1_1 reordered to RGB" if source.channels == "BGR" else "",
        divisor,
        output_path,
    )
    return {"input": expects, "source": meta}


def write_converted(path: Path, state: dict[str, np.ndarray], expects: dict, source: dict) -> None:
    """The converted file (the layout above), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(
            {
                "format": CONVERTED_VGG_FACE,
                "state_dict": {
                    k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()
                },
                "input": expects,
                "source": source,
            },
            tmp,
        )


def state_dict(source: Source) -> dict[str, np.ndarray]:
    """``conv1_1.weight`` ... in our models' order: RGB input channels."""
    state = {}
    for name, conv in zip(CONV_LAYERS, source.convs, strict=True):
        weight = conv.weight
        if name == CONV_LAYERS[0] and source.channels == "BGR":
            weight = weight[:, ::-1]  # the filter for B applies to our third channel
        state[f"{name}.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
        state[f"{name}.bias"] = np.ascontiguousarray(conv.bias, dtype=np.float32)
    return state


def read_source(path: Path) -> Source:
    """The conv layers and input of a VGG-Face release, by the file's first bytes."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; name the downloaded vgg_face.mat or VGG_FACE.t7.")
    with open(path, "rb") as f:
        head = f.read(128)
    if head.startswith(b"MATLAB 7.3"):
        raise UserError(
            f"{path}: a MATLAB v7.3 (HDF5) file, which scipy cannot read; in MATLAB, "
            "load it and save it again with save(..., '-v7')."
        )
    if head.startswith(b"MATLAB"):
        return read_matconvnet(path)
    if path.suffix in (".caffemodel", ".prototxt"):
        raise UserError(
            f"{path}: the Caffe release is not read; convert the MatConvNet (vgg_face.mat) "
            "or Torch (VGG_FACE.t7) release of VGG-Face instead."
        )
    if len(head) < 4 or int.from_bytes(head[:4], "little") not in T7_START:
        raise UserError(
            f"{path}: neither a MATLAB file (MatConvNet's vgg_face.mat) nor a binary Torch7 "
            "file (VGG_FACE.t7); name one of VGG-Face's releases."
        )
    return read_torch7_vgg(path)


# --- MatConvNet -------------------------------------------------------------------------


def _unwrap(value: object) -> object:
    """A MATLAB cell or struct of one element -> the element."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    return value


def _items(value: object) -> list:
    """The elements of a cell array or struct array, in MATLAB's order."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_unwrap(v) for v in value.flatten(order="F")]
    return [] if value is None else [value]


def _field(struct: object, name: str) -> object:
    """A field of a MATLAB struct (or a top-level variable of the file), or None."""
    struct = _unwrap(struct)
    if isinstance(struct, dict):
        return _unwrap(struct.get(name))
    names = getattr(struct, "_fieldnames", None) or []
    return _unwrap(getattr(struct, name)) if name in names else None


def _text(value: object) -> str:
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        return "".join(str(v) for v in value.flatten()) if value.size else ""
    return "" if value is None else str(value)


def _numeric(value: object, what: str, path: Path) -> np.ndarray:
    value = _unwrap(value)
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        raise UserError(f"{path}: {what} is not a numeric array; not a MatConvNet VGG-Face net.")
    return value


def read_matconvnet(path: Path) -> Source:
    from scipy.io import loadmat

    try:
        data = loadmat(path, squeeze_me=False, struct_as_record=False)
    except NotImplementedError:  # scipy's answer to v7.3
        raise UserError(
            f"{path}: a MATLAB v7.3 (HDF5) file, which scipy cannot read; in MATLAB, load it "
            "and save it again with save(..., '-v7')."
        ) from None
    except Exception as err:  # scipy raises several types for a damaged file
        raise UserError(f"{path}: not a readable MATLAB file ({err}).") from None
    net = data if "layers" in data else _field(data, "net")
    if net is None or _field(net, "layers") is None:
        raise UserError(
            f"{path}: a MATLAB file without a MatConvNet net (no `layers`, at the top or "
            "in `net`); not a VGG-Face MatConvNet file."
        )
    if _field(net, "params") is not None:
        convs, pools_after, fmt = _dagnn_layers(net, path)
    else:
        convs, pools_after, fmt = _simplenn_layers(net, path)
    normalization = _field(_field(net, "meta"), "normalization")
    if normalization is None:
        normalization = _field(net, "normalization")  # before vl_simplenn_tidy
    mean, mean_from = _average_pixel(_field(normalization, "averageImage"), path)
    return Source(fmt, convs, pools_after, "RGB", mean, mean_from)


def _average_pixel(average: object, path: Path) -> tuple[tuple[float, float, float], str]:
    """The mean RGB pixel of ``averageImage`` (a pixel, or a whole mean image)."""
    if average is None or (isinstance(average, np.ndarray) and average.size == 0):
        log.warning("%s records no averageImage: using VGG-Face's published mean", path)
        return VGG_FACE_MEAN, "VGG-Face's published mean (the file records none)"
    average = _numeric(average, "normalization.averageImage", path).astype(np.float64)
    if average.size == 3:
        pixel = average.reshape(3)
    elif average.ndim == 3 and average.shape[2] == 3:
        pixel = average.mean(axis=(0, 1))
    else:
        raise UserError(
            f"{path}: normalization.averageImage has shape {average.shape}, neither an RGB "
            "pixel nor an H x W x 3 image."
        )
    return (float(pixel[0]), float(pixel[1]), float(pixel[2])), "the file's averageImage"


def _conv_from_filters(name: str, filters: object, biases: object, path: Path) -> Conv:
    filters = _numeric(filters, f"layer {name}'s filters", path)
    biases = _numeric(biases, f"layer {name}'s biases", path).reshape(-1)
    if filters.ndim == 3:  # MATLAB drops a trailing 1: a bank of one filter
        filters = filters[..., None]
    if filters.ndim != 4:
        raise UserError(
            f"{path}: layer {name}'s filters have shape {filters.shape}, not H x W x In x Out."
        )
    # H x W x In x Out -> Out x In x H x W; MatConvNet correlates, as torch does
    return Conv(name, filters.transpose(3, 2, 0, 1), biases)


def _simplenn_layers(net: object, path: Path) -> tuple[list[Conv], list[int], str]:
    convs: list[Conv] = []
    pools_after: list[int] = []
    for i, layer in enumerate(_items(_field(net, "layers"))):
        kind, name = _text(_field(layer, "type")), _text(_field(layer, "name")) or f"#{i + 1}"
        if kind == "pool":
            pools_after.append(len(convs))
        if kind != "conv" or name.startswith("fc"):
            continue
        weights = _items(_field(layer, "weights"))
        if len(weights) != 2:  # MatConvNet before the weights cell array
            weights = [_field(layer, "filters"), _field(layer, "biases")]
        if any(w is None for w in weights):
            raise UserError(f"{path}: conv layer {name} has no filters and biases.")
        convs.append(_conv_from_filters(name, weights[0], weights[1], path))
    return convs, pools_after, "MatConvNet SimpleNN"


def _dagnn_layers(net: object, path: Path) -> tuple[list[Conv], list[int], str]:
    values = {_text(_field(p, "name")): _field(p, "value") for p in _items(_field(net, "params"))}
    convs: list[Conv] = []
    pools_after: list[int] = []
    for i, layer in enumerate(_items(_field(net, "layers"))):
        kind, name = _text(_field(layer, "type")), _text(_field(layer, "name")) or f"#{i + 1}"
        if kind == "dagnn.Pooling":
            pools_after.append(len(convs))
        if kind != "dagnn.Conv" or name.startswith("fc"):
            continue
        names = [_text(p) for p in _items(_field(layer, "params"))]
        missing = [n for n in names if n not in values]
        if len(names) != 2 or missing:
            raise UserError(
                f"{path}: DagNN conv layer {name} names params {names}; expected a filter "
                f"and a bias, both in `params` (missing there: {missing or 'none'})."
            )
        convs.append(_conv_from_filters(name, values[names[0]], values[names[1]], path))
    return convs, pools_after, "MatConvNet DagNN"


# --- Torch7 -----------------------------------------------------------------------------

_TORCH_CONVS = ("nn.SpatialConvolutionMM", "nn.SpatialConvolution")


def read_torch7_vgg(path: Path) -> Source:
    net = read_torch7(path)
    modules = net.fields.get("modules") if isinstance(net, TorchObject) else None
    if not isinstance(modules, dict) or not modules:
        shown = net.class_name if isinstance(net, TorchObject) else type(net).__name__
        raise UserError(
            f"{path}: a Torch7 file holding a {shown}, not an nn.Sequential network; not the "
            "VGG_FACE.t7 of VGG-Face's Torch release."
        )
    convs: list[Conv] = []
    pools_after: list[int] = []
    for key in sorted(k for k in modules if isinstance(k, float)):  # Lua's 1-based list
        module = modules[key]
        kind = module.class_name if isinstance(module, TorchObject) else type(module).__name__
        if kind == "nn.SpatialMaxPooling":
            pools_after.append(len(convs))
        elif kind in _TORCH_CONVS:
            convs.append(_torch_conv(module, f"module {int(key)} ({kind})", path))
        elif kind.startswith("cudnn."):
            raise UserError(
                f"{path}: module {int(key)} is a {kind}; save the network with "
                "cudnn.convert(net, nn) and net:float() first."
            )
    return Source(
        "Torch7 nn.Sequential",
        convs,
        pools_after,
        "BGR",
        VGG_FACE_MEAN,
        "VGG-Face's mean as its MatConvNet release records it (a .t7 holds none)",
    )


def _torch_conv(module: TorchObject, name: str, path: Path) -> Conv:
    fields = module.fields
    weight, bias = fields.get("weight"), fields.get("bias")
    if not isinstance(weight, T7Tensor) or not isinstance(bias, T7Tensor):
        raise UserError(f"{path}: {name} has no weight and bias tensors.")
    sizes = {k: fields.get(k) for k in ("nOutputPlane", "nInputPlane", "kH", "kW")}
    if not all(isinstance(v, float) for v in sizes.values()):
        raise UserError(f"{path}: {name} lacks nOutputPlane/nInputPlane/kH/kW.")
    shape = tuple(int(sizes[k]) for k in ("nOutputPlane", "nInputPlane", "kH", "kW"))
    w = weight.numpy()
    if w.size != np.prod(shape):
        raise UserError(
            f"{path}: {name}'s weight has {w.size} values, not {shape[0]} x {shape[1]} x "
            f"{shape[2]} x {shape[3]}."
        )
    # SpatialConvolutionMM keeps Out x (In*kH*kW), each row in (plane, y, x) order
    return Conv(name, w.reshape(shape), bias.numpy().reshape(-1))


# --- the topology -----------------------------------------------------------------------


def check_vgg16(source: Source, path: Path) -> int:
    """Check that ``source`` is VGG16's conv stack (13 3x3 convs, pools after 2, 4, 7,
    10, 13, VGG16's widths divided by one divisor) and return the divisor."""
    what = f"{path} ({source.format})"
    if len(source.convs) != len(CONV_LAYERS):
        raise UserError(
            f"{what}: {len(source.convs)} conv layers before the fully connected ones; "
            f"VGG16 (VGG-Face) has {len(CONV_LAYERS)}. Not a VGG-Face file."
        )
    if tuple(source.pools_after[: len(POOLS_AFTER)]) != POOLS_AFTER:
        raise UserError(
            f"{what}: max pools after conv layers {source.pools_after}; VGG16 pools after "
            f"{list(POOLS_AFTER)}. Not a VGG-Face file."
        )
    first = source.convs[0].weight.shape[0]
    full = VGG16_BLOCKS[0][1]
    if first < 1 or full % first:
        raise UserError(f"{what}: conv1_1 has {first} filters; VGG16 has {full}.")
    divisor = full // first
    expected = expected_shapes(DanConfig(width_divisor=divisor))
    for name, conv in zip(CONV_LAYERS, source.convs, strict=True):
        shapes = expected[name]
        if conv.weight.shape != shapes["weight"] or conv.bias.shape != shapes["bias"]:
            raise UserError(
                f"{what}: {name} ({conv.name}) has filters {conv.weight.shape} (Out x In x "
                f"H x W) and {conv.bias.size} biases; VGG16 at width_divisor {divisor} has "
                f"{shapes['weight']}. Not a VGG-Face file."
            )
    return divisor
