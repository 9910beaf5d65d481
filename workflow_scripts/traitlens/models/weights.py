"""Initialise a DAN+ backbone from a weights file (docs/method.md §1).

The paper starts from VGG-Face. Its authors' files cannot be downloaded here, so the user
converts one once (:mod:`traitlens.models.vggface`, README "Starting from VGG-Face") and
names the file in ``models.visual.weights``; this module copies its 13 conv layers (and
batch-norm layers where both sides have them) into :class:`traitlens.models.dan.DanPlus`.
The head is never loaded: it is what training fits.

Accepted layouts, told apart by their keys:

- VGG-Face converted by :mod:`traitlens.models.vggface` (``conv1_1.weight`` ... under
  ``state_dict``, with the input the filters expect: RGB, mean pixel, scale),
- torchvision VGG16 / VGG16-BN state dicts (``features.0.weight`` ...; ``classifier.*``
  is ignored),
- traitlens's own DanPlus state dicts or checkpoints (``backbone.conv1_1.weight`` ...,
  possibly nested under ``model`` or ``state_dict``),
- VGG-Face converted to PyTorch elsewhere (``conv1_1.weight`` as in vgg_face_dag.pth, or
  ``conv_1_1.weight``; ``fc6``-``fc8`` are ignored).

Files are read with ``torch.load(weights_only=True)``, so a pickle of anything but
tensors and plain containers is refused instead of executed.

:func:`check_backbone_settings` runs the same checks at workflow start (rules/common.smk),
before any job: a named file that is missing, or that does not fit the model settings
(widths, batch norm, the input normalisation a converted VGG-Face file records), stops the
run there rather than in a training job hours later.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch

from traitlens.core.errors import UserError
from traitlens.models.dan import CONV_LAYERS, VGG16_BLOCKS, DanConfig, DanPlus

log = logging.getLogger("traitlens")

# What a file converted by traitlens.models.vggface says it is
CONVERTED_VGG_FACE = "traitlens-vgg-face-1"
README_SECTION = 'README.md, "Starting from VGG-Face"'
LAYOUTS = (
    "VGG-Face converted by tools/convert_vggface.py",
    "torchvision VGG16 state dict (features.0.weight, ...)",
    "traitlens DanPlus state dict or checkpoint (backbone.conv1_1.weight, ...)",
    "VGG-Face converted to PyTorch (conv1_1.weight or conv_1_1.weight, ...)",
)
_CONV_PARAMS = ("weight", "bias")
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_TV_KEY = re.compile(r"features\.(\d+)\.(\w+)")
_FACE_KEY = re.compile(r"conv_?(\d)_(\d)\.(weight|bias)")
_OWN_KEY = re.compile(r"backbone\.((?:conv|bn)\d_\d)\.(\w+)")
# mean pixels closer than this (0..255) are the same setting
_MEAN_TOLERANCE = 0.01


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


@dataclass
class Backbone:
    """A weights file's backbone layers, {our layer name: {param: tensor}}, its layout and,
    for a converted VGG-Face file, the input its filters expect."""

    layout: str
    layers: dict[str, dict[str, torch.Tensor]]
    expects: Mapping | None = None


# key(setting) -> the config key to name in a message, e.g. "models.visual.width_divisor"
KeyNamer = Callable[[str], str]


def load_backbone_weights(
    model: DanPlus, path: str | PathLike, *, config_key: str = "models.visual"
) -> list[str]:
    """Copy the backbone layers in the weights file ``path`` into ``model``.

    Returns the names of the model layers that were loaded (conv1_1 ... and bn* where
    both sides have batch norm), for the log. ``config_key`` is the config section of the
    model, named in error messages. Raises UserError for a file that is not a state dict of
    tensors, an unknown key layout, missing conv layers, shapes that do not fit, or a
    converted VGG-Face file whose input normalisation the model settings contradict.
    """
    path = Path(path)
    backbone = read_backbone(path)
    wanted = check_fits(backbone, model.cfg, path, lambda setting: f"{config_key}.{setting}")

    modules = dict(model.backbone.named_children())
    with torch.no_grad():
        for name in wanted:
            module = modules[name]
            for param, tensor in backbone.layers[name].items():
                target = getattr(module, param, None)
                if isinstance(target, torch.Tensor):
                    target.copy_(tensor)

    file_bn = any(name.startswith("bn") for name in backbone.layers)
    log.info(
        "loaded %d backbone layers from %s (%s): %s",
        len(wanted),
        path,
        backbone.layout,
        ", ".join(wanted),
    )
    log.info("the head (trait regressor) keeps its initialisation; only the backbone is loaded")
    if model.cfg.batch_norm and not file_bn:
        log.info("batch-norm layers keep their initialisation: %s has none", path)
    if backbone.layout.startswith("torchvision"):
        # torchvision's weights expect (x/255 - ImageNet mean) / std, not VGG-Face's input.
        log.info(
            "torchvision weights expect ImageNet normalisation: consider %s.mean_rgb "
            "[123.675, 116.28, 103.53] and %s.input_scale 0.0174",
            config_key,
            config_key,
        )
    return wanted


def read_backbone(path: Path, *, mmap: bool = False) -> Backbone:
    """The backbone layers of the weights file ``path``, checked for completeness.
    ``mmap`` maps the tensors instead of reading them (the start check reads only shapes)."""
    state, expects = _read_state_dict(path, mmap=mmap)
    layout, layers = _backbone_layers(state, path)
    if expects is not None:
        layout = LAYOUTS[0] + f" ({expects.get('source', 'VGG-Face')})"
    _check_complete(layers, layout, path)
    return Backbone(layout, layers, expects)


def check_fits(backbone: Backbone, cfg: DanConfig, path: Path, key: KeyNamer) -> list[str]:
    """The layers of ``backbone`` a model of ``cfg`` takes; raises UserError naming the
    config key to change when the file does not fit it."""
    file_bn = any(name.startswith("bn") for name in backbone.layers)
    if file_bn and not cfg.batch_norm:
        # Convs trained with batch norm behind them compute something else without it.
        raise UserError(
            f"{path}: the weights file has batch-norm layers ({backbone.layout}) but the model "
            f"is configured without them; set {key('batch_norm')} to true to use this file."
        )
    expected = expected_shapes(cfg)
    wanted = [
        n for n in expected if n in backbone.layers and (n.startswith("conv") or cfg.batch_norm)
    ]
    for name in wanted:
        for param, tensor in backbone.layers[name].items():
            shape = expected[name].get(param)
            if shape is not None and tuple(tensor.shape) != shape:
                raise UserError(
                    f"{path}: layer {name}.{param} has shape {tuple(tensor.shape)} in the file "
                    f"but the model expects {shape}. "
                    + _width_hint(backbone.layers, key, cfg.width_divisor)
                )
    if backbone.expects is not None:
        check_input_normalisation(backbone.expects, cfg, path, key)
    return wanted


def expected_shapes(cfg: DanConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """{layer: {param: shape}} of a DanPlus backbone with ``cfg``, in network order."""
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    in_ch = 3
    names = iter(CONV_LAYERS)
    for (n_convs, _), out_ch in zip(VGG16_BLOCKS, cfg.widths(), strict=True):
        for _ in range(n_convs):
            name = next(names)
            shapes[name] = {"weight": (out_ch, in_ch, 3, 3), "bias": (out_ch,)}
            if cfg.batch_norm:
                shapes["bn" + name[4:]] = {p: (out_ch,) for p in _BN_PARAMS[:4]}
                shapes["bn" + name[4:]]["num_batches_tracked"] = ()
            in_ch = out_ch
    return shapes


def check_input_normalisation(expects: Mapping, cfg: DanConfig, path: Path, key: KeyNamer) -> None:
    """Refuse model settings that feed the filters other pixels than they were trained on:
    a converted VGG-Face file records its source's mean pixel and scale (0..255 RGB)."""
    mean = [float(v) for v in expects["mean_rgb"]]
    scale = float(expects["input_scale"])
    wrong = []
    if cfg.input_norm != "dataset_mean":
        wrong.append(f"{key('input_norm')}: dataset_mean (the config has {cfg.input_norm})")
    if any(abs(a - b) > _MEAN_TOLERANCE for a, b in zip(cfg.mean_rgb, mean, strict=True)):
        wrong.append(f"{key('mean_rgb')}: {_numbers(mean)} (the config has {list(cfg.mean_rgb)})")
    if not math.isclose(cfg.input_scale, scale, rel_tol=1e-6):
        wrong.append(f"{key('input_scale')}: {scale:g} (the config has {cfg.input_scale:g})")
    if wrong:
        raise UserError(
            f"{path}: the filters of this VGG-Face file expect RGB pixels in 0..255 minus the "
            f"mean pixel {_numbers(mean)}, times {scale:g} ({expects.get('source', '')}); the "
            "model settings feed them other pixels. Set "
            + "; ".join(wrong)
            + f". Or train from scratch instead: {key('weights')}: null ({README_SECTION})."
        )


def _numbers(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in values) + "]"


def check_backbone_settings(models: Mapping, model_names: Iterable[str]) -> None:
    """The start check (rules/common.smk): every CNN's backbone weights file, as
    ``models.visual`` with ``models.<model>`` on top names it, exists and fits the model's
    settings. Raises UserError naming the config key, the file and what to do."""
    for model in model_names:
        own = models.get(model) or {}
        settings = {**models["visual"], **own}
        weights = settings.get("weights")
        if not weights:
            continue  # training from scratch, chosen explicitly with weights: null

        def key(setting: str, own: Mapping = own, model: str = model) -> str:
            return f"models.{model if setting in own else 'visual'}.{setting}"

        path = Path(weights)
        if not path.is_file():
            raise UserError(_missing_file_message(key("weights"), weights, path))
        check_fits(read_backbone(path, mmap=True), DanConfig.from_mapping(settings), path, key)


def _missing_file_message(config_key: str, configured: str, path: Path) -> str:
    return (
        f"{config_key}: the backbone weights file {configured} does not exist (looked for "
        f"{path.resolve()}). The CNNs start from VGG-Face, as the paper does: get the "
        "authors' MatConvNet (vgg_face.mat) or Torch (VGG_FACE.t7) release and convert it "
        f"once with `.venv/bin/python tools/convert_vggface.py SOURCE {configured}` "
        f"({README_SECTION}). To train the backbone from scratch instead, set "
        f"{config_key}: null."
    )


def _read_state_dict(
    path: Path, *, mmap: bool = False
) -> tuple[Mapping[str, torch.Tensor], Mapping | None]:
    """The file's flat {key: tensor} mapping, unwrapping checkpoint and DataParallel
    nesting; and the input a converted VGG-Face file expects (None for other files)."""
    if not path.is_file():
        raise UserError(
            f"{path}: the weights file does not exist; fix the weights path in the config "
            f"({README_SECTION}) or set it to null to train the backbone from scratch."
        )
    not_weights = (
        f"{path}: not a weights file this workflow can read; only PyTorch state dicts of "
        "tensors (torch.save(model.state_dict(), path)) are accepted, never pickles of other "
        "objects."
    )
    try:
        obj = _torch_load(path, mmap)
    except Exception as err:  # any failure here means "not a state dict of tensors"
        raise UserError(f"{not_weights} ({_load_failure(err)})") from None

    expects = None
    if isinstance(obj, Mapping) and obj.get("format") == CONVERTED_VGG_FACE:
        expects = obj.get("input")
        if not isinstance(expects, Mapping) or not {"mean_rgb", "input_scale"} <= set(expects):
            raise UserError(
                f"{path}: a converted VGG-Face file without its input normalisation; convert "
                f"the source again ({README_SECTION})."
            )
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
    return obj, expects


def _torch_load(path: Path, mmap: bool) -> object:
    with warnings.catch_warnings():
        # torch warns before it refuses a plain pickle; the refusal says it all
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        if mmap:
            try:
                # weights_only: refuses (without running) any pickle that builds objects
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:  # an old-format file: the plain load below decides
                pass
        return torch.load(path, map_location="cpu", weights_only=True)


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
            + ". Convert the file to one of them, or set the weights key to null to train the "
            "backbone from scratch."
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
            f"({CONV_LAYERS[0]} ... {CONV_LAYERS[-1]}). Use a complete VGG16 file, or set the "
            "weights key to null to train the backbone from scratch."
        )


def _width_hint(layers: dict[str, dict[str, torch.Tensor]], key: KeyNamer, divisor: int) -> str:
    """What to change: the width divisor the file was made with, where it is one."""
    file_out = layers["conv1_1"]["weight"].shape[0]
    full = VGG16_BLOCKS[0][1]
    if file_out and full % file_out == 0 and full // file_out != divisor:
        return (
            f"The file has the channel widths of width_divisor {full // file_out}: set "
            f"{key('width_divisor')} to {full // file_out} to use it."
        )
    return (
        f"The file does not fit this architecture: change {key('width_divisor')} to the "
        "one the file was made with, or use another weights file."
    )
