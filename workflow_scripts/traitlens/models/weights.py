"""Initialise a DAN+ backbone from a user-supplied weights file (docs/method.md §1).

Without pre-trained VGG-Face weights to download, the backbone is configurable: a user who
has VGG16-topology weights names the file in the config and this module copies its 13
conv layers (and batch-norm layers where both sides have them) into
:class:`traitlens.models.dan.DanPlus`. The head is never loaded: it is what training fits.

Accepted layouts, told apart by their keys:

- torchvision VGG16 / VGG16-BN state dicts (``features.0.weight`` ...; ``classifier.*``
  is ignored),
- traitlens's own DanPlus state dicts or checkpoints (``backbone.conv1_1.weight`` ...,
  possibly nested under ``model`` or ``state_dict``),
- VGG-Face converted to PyTorch (``conv1_1.weight`` as in vgg_face_dag.pth, or
  ``conv_1_1.weight``; ``fc6``-``fc8`` are ignored).

Files are read with ``torch.load(weights_only=True)``, so a pickle of anything but
tensors and plain containers is refused instead of executed.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import torch

from traitlens.core.errors import UserError
from traitlens.models.dan import CONV_LAYERS, VGG16_BLOCKS, DanPlus

log = logging.getLogger("traitlens")

LAYOUTS = (
    "torchvision VGG16 state dict (features.0.weight, ...)",
    "traitlens DanPlus state dict or checkpoint (backbone.conv1_1.weight, ...)",
    "VGG-Face converted to PyTorch (conv1_1.weight or conv_1_1.weight, ...)",
)
_CONV_PARAMS = ("weight", "bias")
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_TV_KEY = re.compile(r"features\.(\d+)\.(\w+)")
_FACE_KEY = re.compile(r"conv_?(\d)_(\d)\.(weight|bias)")
_OWN_KEY = re.compile(r"backbone\.((?:conv|bn)\d_\d)\.(\w+)")


def _torchvision_indices(batch_norm: bool) -> dict[int, str]:
    """torchvision's ``features`` index of each conv (and bn) layer, by our layer name."""
    per_conv = 3 if batch_norm else 2  # conv, [bn,] relu
    index, out = 0, {}
    names = iter(CONV_LAYERS)
    for n_convs, _ in VGG16_BLOCKS:
        for _ in range(n_convs):
            name = next(names)
            out[index] = name
            if batch_norm:
                out[index + 1] = "bn" + name[4:]
            index += per_conv
        index += 1  # max pool
    return out


_TV_PLAIN = _torchvision_indices(batch_norm=False)
_TV_BN = _torchvision_indices(batch_norm=True)


def load_backbone_weights(
    model: DanPlus, path: str | PathLike, *, config_key: str = "models.visual"
) -> list[str]:
    """Copy the backbone layers in the weights file ``path`` into ``model``.

    Returns the names of the model layers that were loaded (conv1_1 ... and bn* where
    both sides have batch norm), for the log. ``config_key`` is the config section of the
    model, named in error messages. Raises UserError for a file that is not a state dict of
    tensors, an unknown key layout, missing conv layers or shapes that do not fit.
    """
    path = Path(path)
    state = _read_state_dict(path)
    layout, layers = _backbone_layers(state, path)
    _check_complete(layers, layout, path)

    model_bn = model.cfg.batch_norm
    file_bn = any(name.startswith("bn") for name in layers)
    if file_bn and not model_bn:
        # Convs trained with batch norm behind them compute something else without it.
        raise UserError(
            f"{path}: the weights file has batch-norm layers ({layout}) but the model is "
            f"configured without them; set {config_key}.batch_norm to true to use this file."
        )

    modules = dict(model.backbone.named_children())
    wanted = [n for n in modules if n in layers and (n.startswith("conv") or model_bn)]
    _check_shapes(modules, layers, wanted, path, config_key, model.cfg.width_divisor)

    with torch.no_grad():
        for name in wanted:
            module = modules[name]
            for param, tensor in layers[name].items():
                target = getattr(module, param, None)
                if isinstance(target, torch.Tensor):
                    target.copy_(tensor)

    log.info(
        "loaded %d backbone layers from %s (%s): %s", len(wanted), path, layout, ", ".join(wanted)
    )
    log.info("the head (trait regressor) keeps its initialisation; only the backbone is loaded")
    if model_bn and not file_bn:
        log.info("batch-norm layers keep their initialisation: %s has none", path)
    if layout.startswith("torchvision"):
        # torchvision's weights expect (x/255 - ImageNet mean) / std, not VGG-Face's input.
        log.info(
            "torchvision weights expect ImageNet normalisation: consider %s.mean_rgb "
            "[123.675, 116.28, 103.53] and %s.input_scale 0.0174",
            config_key,
            config_key,
        )
    return wanted


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """The file's flat {key: tensor} mapping, unwrapping checkpoint and DataParallel
    nesting."""
    if not path.is_file():
        raise UserError(
            f"{path}: the weights file does not exist; fix the weights path in the config "
            "or leave it empty to train the backbone from scratch."
        )
    not_weights = (
        f"{path}: not a weights file this workflow can read; only PyTorch state dicts of "
        "tensors (torch.save(model.state_dict(), path)) are accepted, never pickles of other "
        "objects."
    )
    try:
        with warnings.catch_warnings():
            # torch warns before it refuses a plain pickle; the refusal below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # weights_only: refuses (without running) any pickle that builds arbitrary objects.
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure here means "not a state dict of tensors"
        raise UserError(f"{not_weights} ({_load_failure(err)})") from None

    for _ in range(3):  # checkpoints: {"model": state_dict, "epoch": ...}
        if isinstance(obj, Mapping) and not _has_tensors(obj):
            inner = [obj[k] for k in ("model", "state_dict") if isinstance(obj.get(k), Mapping)]
            if inner:
                obj = inner[0]
                continue
        break
    if not isinstance(obj, Mapping) or not _has_tensors(obj):
        raise UserError(f"{not_weights} It holds a {type(obj).__name__} without tensors.")
    keys = [str(k) for k in obj]
    if keys and all(k.startswith("module.") for k in keys):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_REFUSED_OPCODE = re.compile(r"Unsupported operand \d+")


def _load_failure(err: Exception) -> str:
    """A short reason from torch.load's error, without its advice to re-run with
    weights_only=False or to allow-list the class (either would execute whatever the
    pickle holds)."""
    text = str(err)
    if found := _REFUSED_GLOBAL.search(text):
        return f"it holds a pickled {found.group(1)}, which is not a tensor; it was not loaded"
    if _REFUSED_OPCODE.search(text):
        # torch.save writes protocol 2; the weights-only reader stops at newer opcodes
        return "it is a plain Python pickle (pickle.dump), not a torch.save file; it was not loaded"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    refused = [ln for ln in lines if "GLOBAL" in ln or "Unsupported" in ln]
    if refused:
        return f"it holds objects other than tensors: {refused[0][:200]}"
    if lines and "weights_only" not in lines[0]:
        return f"{type(err).__name__}: {lines[0][:200]}"
    return type(err).__name__


def _has_tensors(obj: Mapping) -> bool:
    return any(isinstance(v, torch.Tensor) for v in obj.values())


def _backbone_layers(
    state: Mapping[str, torch.Tensor], path: Path
) -> tuple[str, dict[str, dict[str, torch.Tensor]]]:
    """Detect the layout; return it and {our layer name: {param: tensor}}."""
    keys = [str(k) for k in state]
    layers: dict[str, dict[str, torch.Tensor]] = {}

    def put(name: str, param: str, value: object, key: str) -> None:
        if not isinstance(value, torch.Tensor):
            raise UserError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; "
                "the weights file must be a state dict of tensors."
            )
        layers.setdefault(name, {})[param] = value

    if any(_OWN_KEY.fullmatch(k) for k in keys):
        layout = "traitlens DanPlus state dict"
        for key in keys:
            if m := _OWN_KEY.fullmatch(key):
                put(m.group(1), m.group(2), state[key], key)
    elif any(_TV_KEY.fullmatch(k) for k in keys):
        has_bn = any(k.startswith("features.") and k.endswith(".running_mean") for k in keys)
        layout = "torchvision VGG16-BN state dict" if has_bn else "torchvision VGG16 state dict"
        index_to_name = _TV_BN if has_bn else _TV_PLAIN
        for key in keys:
            m = _TV_KEY.fullmatch(key)
            if m and int(m.group(1)) in index_to_name:
                put(index_to_name[int(m.group(1))], m.group(2), state[key], key)
    elif any(_FACE_KEY.fullmatch(k) for k in keys):
        layout = "VGG-Face state dict"
        for key in keys:
            if m := _FACE_KEY.fullmatch(key):
                put(f"conv{m.group(1)}_{m.group(2)}", m.group(3), state[key], key)
    else:
        shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
        raise UserError(
            f"{path}: unknown weights layout (keys: {shown}). Accepted layouts: "
            + "; ".join(LAYOUTS)
            + ". Convert the file to one of them or leave the weights path empty."
        )
    return layout, layers


def _check_complete(layers: dict[str, dict[str, torch.Tensor]], layout: str, path: Path) -> None:
    missing = []
    for name in CONV_LAYERS:
        absent = [p for p in _CONV_PARAMS if p not in layers.get(name, {})]
        if len(absent) == len(_CONV_PARAMS):
            missing.append(name)
        elif absent:
            missing.append(f"{name}.{'/'.join(absent)}")
    for name, params in layers.items():
        if name.startswith("bn"):
            absent = [p for p in _BN_PARAMS[:4] if p not in params]
            if absent:
                missing.append(f"{name}.{'/'.join(absent)}")
    if missing:
        raise UserError(
            f"{path}: the weights file ({layout}) lacks VGG16 conv layers: "
            f"{', '.join(missing)}; a backbone file must hold all 13 conv layers "
            f"({CONV_LAYERS[0]} ... {CONV_LAYERS[-1]}). Use a complete VGG16 file or leave "
            "the weights path empty to train from scratch."
        )


def _check_shapes(
    modules: Mapping[str, torch.nn.Module],
    layers: dict[str, dict[str, torch.Tensor]],
    wanted: list[str],
    path: Path,
    config_key: str,
    divisor: int,
) -> None:
    for name in wanted:
        module = modules[name]
        for param, tensor in layers[name].items():
            target = getattr(module, param, None)
            if not isinstance(target, torch.Tensor):
                continue
            if tuple(target.shape) != tuple(tensor.shape):
                raise UserError(
                    f"{path}: layer {name}.{param} has shape {tuple(tensor.shape)} in the file "
                    f"but the model expects {tuple(target.shape)}. "
                    + _width_hint(layers, config_key, divisor)
                )


def _width_hint(layers: dict[str, dict[str, torch.Tensor]], config_key: str, divisor: int) -> str:
    """What to change: the width divisor the file was made with, where it is one."""
    file_out = layers["conv1_1"]["weight"].shape[0]
    full = VGG16_BLOCKS[0][1]
    if file_out and full % file_out == 0 and full // file_out != divisor:
        return (
            f"The file has the channel widths of width_divisor {full // file_out}: set "
            f"{config_key}.width_divisor to {full // file_out} to use it."
        )
    return (
        f"The file does not fit this architecture: change {config_key}.width_divisor to the "
        "one the file was made with, or use another weights file."
    )
