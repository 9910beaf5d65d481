"""DAN+ model (traitlens.models.dan) and backbone weight loading (traitlens.models.weights).

Checks shapes, the pooled descriptor and head against a numpy hand computation, the
input normalisation, the VGG16 topology against torchvision, and the weights loader's
accepted layouts and refusals (wrong shapes, missing layers, pickles of code).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from traitlens.core.errors import UserError
from traitlens.models.dan import CONV_LAYERS, DanConfig, DanPlus
from traitlens.models.weights import load_backbone_weights

from support.pickles import code_running_pickle


def _model(seed: int = 0, **cfg) -> DanPlus:
    torch.manual_seed(seed)
    return DanPlus(DanConfig(**cfg)).eval()


def _pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=gen) * 255


@pytest.fixture(scope="module")
def vgg16() -> torch.nn.Module:
    """torchvision's VGG16, random init (built once: ~1 s)."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None)


@pytest.fixture(scope="module")
def vgg16_file(vgg16, tmp_path_factory) -> Path:
    """A torchvision VGG16 state dict, saved as a user would."""
    state = vgg16.state_dict()
    # The real classifier is ~500 MB; the loader ignores classifier.*, so keep its keys
    # but shrink the tensors to keep the test fast.
    state = {k: (v[:2].clone() if k.startswith("classifier.") else v) for k, v in state.items()}
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(state, path)
    return path


# --- shapes and topology ---------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
def test_activation_and_output_shapes(size):
    model = _model(width_divisor=8, input_size=size)
    widths = model.cfg.widths()
    assert widths == [8, 16, 32, 64, 64]
    x = _pixels(2, size)
    with torch.no_grad():
        acts = model.activations(x, ["conv4_3", "conv5_2", "conv5_3", "pool5"])
        out = model(x)
    expected = {
        "conv4_3": (widths[3], size // 8),
        "conv5_2": (widths[4], size // 16),
        "conv5_3": (widths[4], size // 16),
        "pool5": (widths[4], size // 32),
    }
    assert set(acts) == set(expected)
    for name, (channels, side) in expected.items():
        assert tuple(acts[name].shape) == (2, channels, side, side), name
        assert (acts[name] >= 0).all(), f"{name} is after a ReLU"
    assert out.shape == (2, 5)
    assert ((out > 0) & (out < 1)).all()


def test_backbone_matches_torchvision_vgg16(vgg16):
    ours = list(_model(width_divisor=1, batch_norm=False).backbone.children())
    theirs = list(vgg16.features.children())
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert type(a) is type(b), i
        if isinstance(a, torch.nn.Conv2d):
            assert a.weight.shape == b.weight.shape, i
            assert a.bias.shape == b.bias.shape, i
            assert (a.kernel_size, a.stride, a.padding) == (b.kernel_size, b.stride, b.padding)
        if isinstance(a, torch.nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride), i
    conv_names = [
        n
        for n, m in _model(width_divisor=16).backbone.named_children()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert tuple(conv_names) == CONV_LAYERS


# --- pooled descriptor, head, normalisation ---------------------------------------------


def test_forward_equals_hand_computation():
    model = _model(seed=3, width_divisor=16, input_size=64)
    x = _pixels(3, 64, seed=1)
    with torch.no_grad():
        acts = model.activations(x, ["conv5_2", "pool5"])
        out = model(x).numpy().astype(np.float64)
    relu52 = acts["conv5_2"].numpy().astype(np.float64)
    pool5 = acts["pool5"].numpy().astype(np.float64)
    assert relu52.shape[2:] == (4, 4) and pool5.shape[2:] == (2, 2)
    assert relu52.max() > 0 and pool5.max() > 0, "dead features would make the test vacuous"

    def l2(v):
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    parts = []
    for a in (relu52, pool5):
        parts.append(l2(a.mean(axis=(2, 3))))
        parts.append(l2(a.max(axis=(2, 3))))
    desc = np.concatenate(parts, axis=1)
    assert desc.shape == (3, 4 * model.cfg.widths()[-1])
    np.testing.assert_allclose(model.pooled(x).detach().numpy(), desc, rtol=1e-5, atol=1e-6)

    w = model.head.weight.detach().numpy().astype(np.float64)
    b = model.head.bias.detach().numpy().astype(np.float64)
    expected = 1 / (1 + np.exp(-(desc @ w.T + b)))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_input_normalisation_mean_and_scale():
    model = _model(width_divisor=16, mean_rgb=(120.0, 110.0, 100.0), input_scale=0.5)
    mean = torch.tensor([120.0, 110.0, 100.0]).view(1, 3, 1, 1)
    conv = model.backbone.conv1_1
    bias = conv.bias.detach()
    with torch.no_grad():
        # Pixels equal to the mean: the first conv sees zeros, so relu1_1 = relu(bias).
        at_mean = model.activations(mean.expand(1, 3, 16, 16).clone(), ["conv1_1"])["conv1_1"]
        expected = torch.relu(bias).view(1, -1, 1, 1).expand_as(at_mean)
        torch.testing.assert_close(at_mean, expected)
        # mean + 2: the conv sees (2 * 0.5) = 1 everywhere; away from the zero padding its
        # output is bias + sum of its weights.
        plus = model.activations((mean + 2).expand(1, 3, 16, 16).clone(), ["conv1_1"])
        inner = plus["conv1_1"][0, :, 1:-1, 1:-1]
        expected = torch.relu(bias + conv.weight.detach().sum(dim=(1, 2, 3)))
        torch.testing.assert_close(inner, expected.view(-1, 1, 1).expand_as(inner))


# --- weights ----------------------------------------------------------------------------


def _conv_state(model: DanPlus) -> dict[str, torch.Tensor]:
    return {n: getattr(model.backbone, n).weight.detach().clone() for n in CONV_LAYERS}


def test_torchvision_vgg16_loads(vgg16_file):
    model = _model(width_divisor=1)
    head_before = model.head.weight.detach().clone()
    loaded = load_backbone_weights(model, vgg16_file)
    assert loaded == list(CONV_LAYERS)
    state = torch.load(vgg16_file, weights_only=True)
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    for name, idx in zip(CONV_LAYERS, conv_indices, strict=True):
        conv = getattr(model.backbone, name)
        torch.testing.assert_close(conv.weight.detach(), state[f"features.{idx}.weight"])
        torch.testing.assert_close(conv.bias.detach(), state[f"features.{idx}.bias"])
    torch.testing.assert_close(model.head.weight.detach(), head_before)


def test_full_vgg16_into_narrow_model_names_file_layer_shapes(vgg16_file):
    model = _model(width_divisor=4)
    with pytest.raises(UserError) as err:
        load_backbone_weights(model, vgg16_file, config_key="models.visual")
    msg = str(err.value)
    assert str(vgg16_file) in msg
    assert "conv1_1" in msg
    assert "(64, 3, 3, 3)" in msg and "(16, 3, 3, 3)" in msg
    assert "models.visual.width_divisor" in msg and "to 1" in msg


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("nest", [False, True])
def test_own_state_dict_round_trips_backbone_only(tmp_path, batch_norm, nest):
    source = _model(seed=1, width_divisor=16, batch_norm=batch_norm)
    if batch_norm:  # make the running statistics differ from their init
        source.backbone.bn1_1.running_mean.fill_(0.25)
    path = tmp_path / "dan.pt"
    state = source.state_dict()
    torch.save({"model": state, "epoch": 4} if nest else state, path)

    target = _model(seed=2, width_divisor=16, batch_norm=batch_norm)
    head_before = target.head.weight.detach().clone()
    loaded = load_backbone_weights(target, path)
    assert loaded[:3] == (["conv1_1", "bn1_1", "conv1_2"] if batch_norm else list(CONV_LAYERS[:3]))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(target.backbone.state_dict()[key], value)
    torch.testing.assert_close(target.head.weight.detach(), head_before)  # backbone only


def test_bn_model_takes_plain_file_bn_stays_at_init(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(_model(seed=1, width_divisor=16).state_dict(), path)
    model = _model(seed=2, width_divisor=16, batch_norm=True)
    loaded = load_backbone_weights(model, path)
    assert loaded == list(CONV_LAYERS)
    assert torch.equal(model.backbone.bn1_1.weight, torch.ones_like(model.backbone.bn1_1.weight))


def test_bn_file_into_plain_model_is_refused(tmp_path):
    path = tmp_path / "bn.pt"
    torch.save(_model(width_divisor=16, batch_norm=True).state_dict(), path)
    with pytest.raises(UserError, match="batch_norm"):
        load_backbone_weights(_model(width_divisor=16), path)


@pytest.mark.parametrize("sep", ["", "_"])
def test_vgg_face_style_dict_loads(tmp_path, sep):
    source = _model(seed=5, width_divisor=8)
    state = {}
    for name in CONV_LAYERS:
        conv = getattr(source.backbone, name)
        key = name.replace("conv", f"conv{sep}", 1)
        state[f"{key}.weight"] = conv.weight.detach().clone()
        state[f"{key}.bias"] = conv.bias.detach().clone()
    for fc in ("fc6", "fc7", "fc8"):  # ignored, as the head is trained here
        state[f"{fc}.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg_face.pth"
    torch.save(state, path)
    model = _model(seed=6, width_divisor=8)
    assert load_backbone_weights(model, path) == list(CONV_LAYERS)
    for name, weight in _conv_state(source).items():
        torch.testing.assert_close(getattr(model.backbone, name).weight.detach(), weight)


def test_missing_conv_layers_are_listed(tmp_path):
    state = {
        f"{n}.{p}": torch.zeros(1)
        for n in CONV_LAYERS
        if n not in ("conv3_2", "conv5_3")
        for p in ("weight", "bias")
    }
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_backbone_weights(_model(width_divisor=16), path)
    msg = str(err.value)
    assert str(path) in msg
    assert msg.split("lacks VGG16 conv layers: ")[1].split(";")[0] == "conv3_2, conv5_3"


def test_unknown_layout_lists_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"layer1.0.conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError) as err:
        load_backbone_weights(_model(width_divisor=16), path)
    msg = str(err.value)
    assert str(path) in msg and "layer1.0.conv1.weight" in msg and "features.0.weight" in msg


class _Payload:
    """Unpickling this would run _touch(marker)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(marker: str) -> None:
    Path(marker).touch()


def _assert_not_weights(model: DanPlus, path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_backbone_weights(model, path)
    msg = str(err.value)
    assert str(path) in msg and "not a weights file" in msg and "state dict" in msg


def test_torch_save_of_object_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran_torch"
    path = tmp_path / "evil.pt"
    torch.save({"conv1_1.weight": torch.zeros(1), "x": _Payload(str(marker))}, path)
    _assert_not_weights(_model(width_divisor=16), path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["reduce", "os_system"])
def test_plain_pickle_payload_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / f"ran_{kind}"
    path = tmp_path / "evil.pkl"
    if kind == "reduce":
        path.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=2))
    else:
        path.write_bytes(code_running_pickle(str(marker)))
    _assert_not_weights(_model(width_divisor=16), path)
    assert not marker.exists()


def test_text_file_and_bare_tensor_are_refused(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("conv1_1.weight 0.1 0.2\n")
    _assert_not_weights(_model(width_divisor=16), text)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    _assert_not_weights(_model(width_divisor=16), tensor)


def test_missing_file_is_a_user_error(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(UserError, match="does not exist"):
        load_backbone_weights(_model(width_divisor=16), path)


def test_per_image_norm_ignores_a_global_light_change():
    torch.manual_seed(0)
    cfg = DanConfig(width_divisor=16, batch_norm=False, input_size=32, input_norm="per_image")
    model = DanPlus(cfg).eval()
    plain = DanPlus(DanConfig(width_divisor=16, input_size=32)).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32) * 150 + 40
    brighter = x * 1.3 + 10  # a gain and an offset: what per_image removes
    with torch.no_grad():
        acts = [
            m.activations(v, ["conv1_1"])["conv1_1"] for m in (model, plain) for v in (x, brighter)
        ]
        assert torch.allclose(model(x), model(brighter), atol=1e-6)
    assert torch.allclose(acts[0], acts[1], atol=1e-4)
    assert (acts[2] - acts[3]).abs().max() > 1.0  # the paper's mean subtraction keeps it


@pytest.mark.parametrize(
    ("protocol", "reason"),
    [
        (2, "it holds a pickled argparse.Namespace, which is not a tensor"),
        (4, "it is a plain Python pickle (pickle.dump), not a torch.save file"),
    ],
)
def test_pickle_of_something_else_names_what_it_is(tmp_path, recwarn, protocol, reason):
    """The wrong file picked from a run folder (its saved arguments): refused with what
    it holds, without torch's advice to allow-list the class or its protocol warning."""
    import argparse

    path = tmp_path / "args.pt"
    path.write_bytes(pickle.dumps(argparse.Namespace(lr=0.01, arch="vgg16"), protocol=protocol))
    with pytest.raises(UserError) as err:
        load_backbone_weights(_model(width_divisor=16), path)
    msg = str(err.value)
    assert str(path) in msg and "not a weights file" in msg and reason in msg
    assert "safe_globals" not in msg and "weights_only" not in msg
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


@pytest.mark.parametrize("stride", [16, 8])
def test_cam_map_stride_sets_the_map_side_and_keeps_the_weights(stride):
    """Zhou et al.'s CAM keeps VGG16 to conv5_3 (S/16 maps); stride 8 drops pool4 as
    well, doubling the map side. Pooling layers hold no weights, so a stride-16 network's
    state dict loads into a stride-8 one, and both give the same conv4 activations."""
    from traitlens.models.dan import DanCam, make_model

    base = dict(width_divisor=16, input_size=96, head="cam", cam_channels=64)
    cam = make_model(DanConfig(**base, cam_map_stride=stride))
    assert isinstance(cam, DanCam)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 96, 96) * 255
    maps, pred = cam.eval().class_activation_maps(x)
    assert maps.shape == (2, 5, 96 // stride, 96 // stride)
    # the CAM identity: the map's mean plus the bias is the logit
    assert torch.allclose(torch.sigmoid(maps.mean(dim=(2, 3)) + cam.head.bias), pred, atol=1e-6)
    other = make_model(DanConfig(**base, cam_map_stride=24 - stride))
    other.load_state_dict(cam.state_dict())
    a = cam.eval().activations(x, ["conv4_3"])["conv4_3"]
    assert torch.equal(a, other.eval().activations(x, ["conv4_3"])["conv4_3"])
    with pytest.raises(ValueError, match="cam_map_stride must be 8 or 16"):
        make_model(DanConfig(**base, cam_map_stride=4))
