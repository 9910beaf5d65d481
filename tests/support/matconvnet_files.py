"""MatConvNet files of VGG-Face at a small width, in the layouts of its releases, written
with scipy.io.savemat (MATLAB 5 format, as MATLAB's save writes below 2 GB):

- ``simplenn``: MatConvNet's model zoo vgg-face.mat, after vl_simplenn_tidy: the
  variables ``layers`` (a 1 x N cell array of layer structs) and ``meta`` (``classes``,
  ``normalization`` with ``averageImage`` 1 x 1 x 3) at the top of the file. A conv
  layer: ``name``, ``type`` 'conv', ``weights`` = {filters H x W x In x Out, biases 1 x
  Out}, ``size``, ``pad``, ``stride``, ``dilation``, ``precious``, ``opts``; fc6-fc8
  are conv layers too (fc6's filters 7 x 7 x 512 x 4096).
- ``legacy``: the authors' own package (vgg_face_matconvnet/data/vgg_face.mat), from
  before vl_simplenn_tidy: one struct ``net`` with ``layers`` (conv layers with
  ``filters`` and ``biases`` fields), ``normalization`` and ``classes``.
- ``dagnn``: a DagNN net (dagnn.DagNN.saveobj): ``vars``, ``params`` (a struct array of
  ``name`` / ``value``: conv1_1f, conv1_1b, ...), ``layers`` (a struct array whose conv
  layers are 'dagnn.Conv' and name their params) and ``meta``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

from support.torch7_files import VGG16_BLOCKS

VGG_FACE_AVERAGE = (129.1863, 104.7624, 93.5940)


def _cell(*items) -> np.ndarray:
    """A 1 x n MATLAB cell array."""
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _row(*values) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(1, -1)


def vgg_face_layers(width_divisor: int, seed: int, blocks=VGG16_BLOCKS, kernel: int = 3):
    """[(name, kind, filters H x W x In x Out, biases)] of VGG-Face at widths / divisor:
    conv/relu/pool of the backbone, then fc6-fc8 (as convs) and the softmax."""
    rng = np.random.default_rng(seed)
    layers = []
    in_ch = 3
    for b, (n_convs, width) in enumerate(blocks):
        out_ch = max(1, width // width_divisor)
        for i in range(n_convs):
            name = f"{b + 1}_{i + 1}"
            filters = rng.normal(0, 0.1, (kernel, kernel, in_ch, out_ch)).astype(np.float32)
            biases = rng.normal(0, 0.1, out_ch).astype(np.float32)
            layers += [
                (f"conv{name}", "conv", filters, biases),
                (f"relu{name}", "relu", None, None),
            ]
            in_ch = out_ch
        layers.append((f"pool{b + 1}", "pool", None, None))
    fc = max(1, 4096 // width_divisor)
    for name, support, n_in, n_out in (
        ("fc6", 7, in_ch, fc),
        ("fc7", 1, fc, fc),
        ("fc8", 1, fc, max(1, 2622 // width_divisor)),
    ):
        filters = rng.normal(0, 0.01, (support, support, n_in, n_out)).astype(np.float32)
        layers.append((name, "conv", filters, np.zeros(n_out, np.float32)))
        if name != "fc8":
            layers.append((f"relu{name[2:]}", "relu", None, None))
    layers.append(("prob", "softmax", None, None))
    return layers


def _simplenn_layer(name, kind, filters, biases, legacy: bool) -> dict:
    layer = {"name": name, "type": kind}
    if kind == "conv":
        pad = 0 if name.startswith("fc") else 1
        if legacy:
            layer.update(filters=filters, biases=biases.reshape(1, -1))
        else:
            layer.update(weights=_cell(filters, biases.reshape(1, -1)), size=_row(*filters.shape))
        layer.update(pad=_row(pad, pad, pad, pad), stride=_row(1, 1))
        if not legacy:
            layer.update(dilation=_row(1, 1), precious=False, opts=_cell())
    elif kind == "relu" and not legacy:
        layer.update(leak=0.0)
    elif kind == "pool":
        layer.update(method="max", pool=_row(2, 2), stride=_row(2, 2), pad=_row(0, 0, 0, 0))
    if not legacy:
        layer.setdefault("precious", False)
    return layer


def _meta(n_classes: int, average: np.ndarray) -> dict:
    names = [f"Identity_{i:04d}" for i in range(n_classes)]
    return {
        "classes": {"name": _cell(*names), "description": _cell(*names)},
        "normalization": {
            "imageSize": _row(224, 224, 3),
            "averageImage": average,
            "keepAspect": True,
            "border": _row(0, 0),
            "cropSize": _row(0.875, 0.875),
            "interpolation": "bilinear",
        },
    }


def vgg_face_mat(
    path: Path,
    width_divisor: int = 16,
    seed: int = 0,
    *,
    layout: str = "simplenn",
    blocks=VGG16_BLOCKS,
    kernel: int = 3,
    average=VGG_FACE_AVERAGE,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write VGG-Face's MatConvNet file in ``layout`` (simplenn | legacy | dagnn); return
    the backbone's filters as the file holds them: {conv1_1: (H x W x In x Out, Out)},
    RGB input. ``average`` None leaves normalization.averageImage empty."""
    layers = vgg_face_layers(width_divisor, seed, blocks, kernel)
    n_classes = layers[-2][2].shape[3]
    # MatConvNet keeps single precision
    average = np.zeros((0, 0)) if average is None else np.asarray(average, np.float32)
    filters = {n: (f, b) for n, kind, f, b in layers if kind == "conv" and not n.startswith("fc")}
    # vl_simplenn_tidy keeps the mean pixel as 1 x 1 x 3; the older files as a row
    pixel = (
        average.reshape((1, -1) if layout == "legacy" else (1, 1, 3)) if average.size else average
    )
    if layout == "simplenn":
        cells = _cell(*(_simplenn_layer(*layer, legacy=False) for layer in layers))
        content = {"layers": cells, "meta": _meta(n_classes, pixel)}
    elif layout == "legacy":
        cells = _cell(*(_simplenn_layer(*layer, legacy=True) for layer in layers))
        content = {"net": {"layers": cells, **_meta(n_classes, pixel)}}
    elif layout == "dagnn":
        content = _dagnn(layers, _meta(n_classes, pixel))
    else:
        raise ValueError(layout)
    savemat(path, content, do_compression=True)
    return filters


def _struct_array(rows: list[dict]) -> np.ndarray:
    """A 1 x n MATLAB struct array with the fields of ``rows``."""
    names = list(rows[0])
    array = np.zeros((1, len(rows)), dtype=[(n, object) for n in names])
    for i, row in enumerate(rows):
        array[0, i] = tuple(row[n] for n in names)
    return array


def _dagnn(layers, meta: dict) -> dict:
    params, dag_layers, variables = [], [], [{"name": "data", "fanin": 0.0, "fanout": 1.0}]
    previous = "data"
    for name, kind, filters, biases in layers:
        block, names = {}, _cell()
        if kind == "conv":
            params += [
                {"name": f"{name}f", "value": filters, "learningRate": 1.0, "weightDecay": 1.0},
                {"name": f"{name}b", "value": biases.reshape(-1, 1), "learningRate": 2.0,
                 "weightDecay": 0.0},
            ]  # fmt: skip
            names = _cell(f"{name}f", f"{name}b")
            block = {"size": _row(*filters.shape), "hasBias": True, "pad": _row(1, 1, 1, 1)}
        elif kind == "pool":
            block = {"method": "max", "poolSize": _row(2, 2), "stride": _row(2, 2)}
        dag_layers.append(
            {
                "name": name,
                "type": {"conv": "dagnn.Conv", "relu": "dagnn.ReLU", "pool": "dagnn.Pooling"}.get(
                    kind, "dagnn.SoftMax"
                ),
                "inputs": _cell(previous),
                "outputs": _cell(f"x_{name}"),
                "params": names,
                "block": block,
            }
        )
        variables.append({"name": f"x_{name}", "fanin": 1.0, "fanout": 1.0})
        previous = f"x_{name}"
    return {
        "vars": _struct_array(variables),
        "params": _struct_array(params),
        "layers": _struct_array(dag_layers),
        "meta": meta,
    }


def converted_vgg_face(path: Path, width_divisor: int = 1) -> Path:
    """What tools/convert_vggface.py writes, at any width, without a source to convert:
    zero filters (a full-width source would hold ~500 MB of fully connected layers)."""
    from traitlens.models.dan import DanConfig
    from traitlens.models.vggface import write_converted
    from traitlens.models.weights import expected_shapes

    shapes = expected_shapes(DanConfig(width_divisor=width_divisor))
    state = {
        f"{layer}.{param}": np.zeros(shape, np.float32)
        for layer, params in shapes.items()
        for param, shape in params.items()
    }
    expects = {"channels": "RGB", "mean_rgb": list(VGG_FACE_AVERAGE), "input_scale": 1.0}
    write_converted(path, state, expects, {"format": "zeros, for tests"})
    return path
