"""VGG-Face's releases converted into the backbone file the models start from
(traitlens.models.vggface, tools/convert_vggface.py), and the start check of
``models.visual.weights`` (traitlens.models.weights.check_backbone_settings, called by
rules/common.smk).

The releases are ~500 MB each and cannot be downloaded here, so the tests write VGG-Face's
topology at a small width in each release's own container (tests/support/torch7_files.py,
tests/support/matconvnet_files.py). The key check is numeric: conv1_1 of the converted
file, loaded into DanPlus and fed RGB pixels through the model's own normalisation,
computes what the source's filters compute on the pixels the source expects (BGR for the
Torch release, RGB for MatConvNet's), minus the source's mean. Its negative controls: the
same check without the BGR reordering, or with the filters' rows and columns swapped,
fails.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.io import savemat  # imported here: a first scipy import probes the platform
from snakemake.utils import validate

from traitlens.core.errors import UserError
from traitlens.models.dan import CONV_LAYERS, DanConfig, DanPlus
from traitlens.models.torch7_file import Tensor, TorchObject, read_torch7
from traitlens.models.vggface import convert_vgg_face
from traitlens.models.weights import check_backbone_settings, load_backbone_weights

from support.matconvnet_files import VGG_FACE_AVERAGE, vgg_face_mat
from support.torch7_files import VGG19_BLOCKS, TorchClass, vgg_face_t7, write_t7
from support.workflow import REPO, run_snakemake, write_config
from support.workflow_config import fi_config, fi_layout

DIVISOR = 16  # VGG16's widths / 16: conv1_1 has 4 filters, conv5_3 32
SCHEMA = str(REPO / "schemas" / "config.schema.yaml")
MINIMAL = {"dataset": {"name": "mine", "format": "manifest", "manifest": "videos.tsv"}}
CNN_MODELS = ("img", "face", "img_cam", "face_cam")
RELEASES = {
    "torch7": lambda p: vgg_face_t7(p, DIVISOR, seed=1),
    "torch7_4d": lambda p: vgg_face_t7(
        p, DIVISOR, seed=2, conv_class="nn.SpatialConvolution", weight_2d=False
    ),
    "matconvnet": lambda p: vgg_face_mat(p, DIVISOR, seed=3),
    "matconvnet_legacy": lambda p: vgg_face_mat(p, DIVISOR, seed=4, layout="legacy"),
    "matconvnet_dagnn": lambda p: vgg_face_mat(p, DIVISOR, seed=5, layout="dagnn"),
}
SUFFIX = {"torch7": ".t7", "torch7_4d": ".t7"}


def release(tmp_path: Path, name: str) -> tuple[Path, dict]:
    path = tmp_path / f"vgg_face{SUFFIX.get(name, '.mat')}"
    return path, RELEASES[name](path)


def image(seed: int = 0, size: int = 12) -> np.ndarray:
    """An RGB uint8 image, H x W x 3, whose channels differ."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3))
    pixels[..., 0] = np.clip(pixels[..., 0] + 60, 0, 255)  # reddish, as faces are
    return pixels.astype(np.uint8)


def padded(x: np.ndarray) -> np.ndarray:
    return np.pad(x, ((1, 1), (1, 1), (0, 0)))


def matconvnet_conv(
    rgb: np.ndarray, filters: np.ndarray, biases: np.ndarray, average
) -> np.ndarray:
    """vl_nnconv with pad 1 on (image - averageImage): y(i,j,o) = b(o) + sum over u, v,
    c of F(u,v,c,o) x(i+u, j+v, c), F being H x W x In x Out. Returns Out x H x W."""
    x = padded(rgb.astype(np.float64) - np.asarray(average, np.float64))
    h, w = rgb.shape[:2]
    out = np.zeros((h, w, filters.shape[3])) + biases
    for u in range(3):
        for v in range(3):
            out += np.einsum("ijc,co->ijo", x[u : u + h, v : v + w], filters[u, v])
    return out.transpose(2, 0, 1)


def torch7_conv(rgb: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """SpatialConvolutionMM with pad 1 on the BGR image minus VGG-Face's mean (in BGR):
    output = bias + W (Out x In*kH*kW) @ columns, a column's rows in (plane, y, x) order."""
    bgr = rgb[..., ::-1].astype(np.float64) - np.asarray(VGG_FACE_AVERAGE[::-1])
    x = padded(bgr)
    h, w = rgb.shape[:2]
    rows = [x[u : u + h, v : v + w, c] for c in range(3) for u in range(3) for v in range(3)]
    columns = np.stack(rows).reshape(27, h * w)
    return (weight.reshape(weight.shape[0], 27) @ columns + bias[:, None]).reshape(-1, h, w)


def source_conv1_1(name: str, rgb: np.ndarray, filters: dict) -> np.ndarray:
    """conv1_1 as the source computes it on the pixels it expects."""
    weight, bias = filters["conv1_1"]
    if name.startswith("torch7"):
        return torch7_conv(rgb, weight, bias)
    return matconvnet_conv(rgb, weight, bias, VGG_FACE_AVERAGE)


def our_conv1_1(model: DanPlus, rgb: np.ndarray) -> np.ndarray:
    """conv1_1 (before its ReLU) of the model fed RGB pixels as the pixel reader gives them."""
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    with torch.no_grad():
        return model.backbone.conv1_1(model.normalise(pixels))[0].double().numpy()


def loaded_model(path: Path, **cfg) -> DanPlus:
    torch.manual_seed(0)
    model = DanPlus(DanConfig(width_divisor=DIVISOR, **cfg)).eval()
    assert load_backbone_weights(model, path) == list(CONV_LAYERS)
    return model


# --- conversion, numerically -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_converted_conv1_1_computes_what_the_source_computes(tmp_path, name):
    source, filters = release(tmp_path, name)
    converted = tmp_path / "vgg_face.pt"
    written = convert_vgg_face(source, converted)
    assert written["input"]["channels"] == "RGB" and written["input"]["input_scale"] == 1.0
    assert written["source"]["channels"] == ("BGR" if name.startswith("torch7") else "RGB")
    np.testing.assert_allclose(written["input"]["mean_rgb"], VGG_FACE_AVERAGE, atol=1e-4)

    model = loaded_model(converted)
    for seed in range(3):
        rgb = image(seed)
        expected = source_conv1_1(name, rgb, filters)
        np.testing.assert_allclose(our_conv1_1(model, rgb), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_every_conv_layer_is_the_sources_filter(tmp_path, name):
    source, filters = release(tmp_path, name)
    convert_vgg_face(source, tmp_path / "vgg_face.pt")
    state = torch.load(tmp_path / "vgg_face.pt", weights_only=True)["state_dict"]
    assert sorted(state) == sorted(f"{n}.{p}" for n in CONV_LAYERS for p in ("weight", "bias"))
    for layer in CONV_LAYERS:
        weight, bias = filters[layer]
        if not name.startswith("torch7"):
            weight = weight.transpose(3, 2, 0, 1)  # H x W x In x Out -> Out x In x H x W
        if layer == "conv1_1" and name.startswith("torch7"):
            weight = weight[:, ::-1]  # BGR -> RGB
        np.testing.assert_array_equal(state[f"{layer}.weight"].numpy(), weight, err_msg=layer)
        np.testing.assert_array_equal(state[f"{layer}.bias"].numpy(), bias, err_msg=layer)


def test_without_the_bgr_reordering_the_numbers_differ(tmp_path):
    """Negative control: the Torch release's conv1_1 used as stored (BGR filters on RGB
    pixels) does not compute what the source computes."""
    source, filters = release(tmp_path, "torch7")
    converted = tmp_path / "vgg_face.pt"
    convert_vgg_face(source, converted)
    model = loaded_model(converted)
    with torch.no_grad():
        model.backbone.conv1_1.weight.copy_(model.backbone.conv1_1.weight.flip(1))
    rgb = image(0)
    difference = np.abs(our_conv1_1(model, rgb) - source_conv1_1("torch7", rgb, filters))
    assert difference.max() > 1.0, difference.max()


def test_with_rows_and_columns_swapped_the_numbers_differ(tmp_path):
    """Negative control: MatConvNet's filters read as W x H (a transposed kernel) compute
    something else; the converter's H x W reading is the one that matches."""
    source, filters = release(tmp_path, "matconvnet")
    converted = tmp_path / "vgg_face.pt"
    convert_vgg_face(source, converted)
    model = loaded_model(converted)
    with torch.no_grad():
        model.backbone.conv1_1.weight.copy_(model.backbone.conv1_1.weight.transpose(2, 3).clone())
    rgb = image(1)
    difference = np.abs(our_conv1_1(model, rgb) - source_conv1_1("matconvnet", rgb, filters))
    assert difference.max() > 1.0, difference.max()


def test_the_sources_mean_in_the_torch_demos_order_is_refused(tmp_path):
    """The Torch release's demo subtracts VGG-Face's RGB mean from BGR channels; a model
    set up that way feeds the filters other pixels, and the loader says what to set."""
    source, _ = release(tmp_path, "torch7")
    converted = tmp_path / "vgg_face.pt"
    convert_vgg_face(source, converted)
    model = DanPlus(DanConfig(width_divisor=DIVISOR, mean_rgb=VGG_FACE_AVERAGE[::-1]))
    with pytest.raises(UserError) as err:
        load_backbone_weights(model, converted)
    message = str(err.value)
    assert str(converted) in message
    assert "models.visual.mean_rgb: [129.1863, 104.7624, 93.594]" in message, message


# --- the file formats --------------------------------------------------------------------


def test_the_torch7_file_reads_back_as_lua_wrote_it(tmp_path):
    path, filters = release(tmp_path, "torch7")
    net = read_torch7(path)
    assert isinstance(net, TorchObject) and net.class_name == "nn.Sequential"
    modules = [net.fields["modules"][k] for k in sorted(net.fields["modules"])]
    kinds = [m.class_name for m in modules]
    assert len(modules) == 40 and kinds.count("nn.SpatialConvolutionMM") == 13
    assert kinds[-5:] == ["nn.Linear", "nn.ReLU", "nn.Dropout", "nn.Linear", "nn.SoftMax"]
    first = modules[0].fields
    assert isinstance(first["weight"], Tensor) and first["weight"].size == (4, 27)
    assert first["train"] is False and first["kW"] == 3.0
    np.testing.assert_array_equal(first["weight"].numpy(), filters["conv1_1"][0].reshape(4, 27))
    assert net.fields["output"] is modules[-1].fields["output"]  # written once, then referred to
    view = modules[kinds.index("nn.View")].fields["size"]
    assert view.read().tolist() == [32 * 7 * 7]


def test_the_converted_file_loads_weights_only_and_says_what_it_expects(tmp_path):
    source, _ = release(tmp_path, "matconvnet")
    convert_vgg_face(source, tmp_path / "out" / "vgg_face.pt")
    saved = torch.load(tmp_path / "out" / "vgg_face.pt", weights_only=True)
    assert saved["format"] == "traitlens-vgg-face-1"
    assert saved["input"]["pixel_range"] == [0, 255]
    assert saved["source"]["width_divisor"] == DIVISOR
    assert saved["source"]["mean_from"] == "the file's averageImage"


def test_a_mat_without_averageimage_falls_back_to_the_published_mean(tmp_path):
    source = tmp_path / "vgg_face.mat"
    vgg_face_mat(source, DIVISOR, average=None)
    written = convert_vgg_face(source, tmp_path / "vgg_face.pt")
    assert written["input"]["mean_rgb"] == list(VGG_FACE_AVERAGE)
    assert "published" in written["source"]["mean_from"]


# --- refusals ----------------------------------------------------------------------------


def _refused(source: Path, tmp_path: Path, *expected: str) -> str:
    output = tmp_path / "refused.pt"
    with pytest.raises(UserError) as err:
        convert_vgg_face(source, output)
    message = str(err.value)
    assert str(source) in message, message
    for text in expected:
        assert text in message, message
    assert not output.exists() and not list(tmp_path.glob("*.tmp*"))
    return message


@pytest.mark.parametrize("container", ["mat", "t7"])
def test_vgg19_is_not_vgg16(tmp_path, container):
    source = tmp_path / f"vgg19.{container}"
    if container == "mat":
        vgg_face_mat(source, DIVISOR, blocks=VGG19_BLOCKS)
    else:
        vgg_face_t7(source, DIVISOR, blocks=VGG19_BLOCKS)
    _refused(source, tmp_path, "16 conv layers", "VGG16 (VGG-Face) has 13")


@pytest.mark.parametrize("container", ["mat", "t7"])
def test_a_missing_conv_layer_is_named(tmp_path, container):
    blocks = ((2, 64), (2, 128), (2, 256), (3, 512), (3, 512))  # conv3_3 missing
    source = tmp_path / f"short.{container}"
    if container == "mat":
        vgg_face_mat(source, DIVISOR, blocks=blocks)
    else:
        vgg_face_t7(source, DIVISOR, blocks=blocks)
    _refused(source, tmp_path, "12 conv layers")


def test_other_kernels_are_not_vgg16(tmp_path):
    source = tmp_path / "five.mat"
    vgg_face_mat(source, DIVISOR, kernel=5)
    _refused(source, tmp_path, "conv1_1", "(4, 3, 5, 5)", "(4, 3, 3, 3)")


def test_files_that_are_not_a_release(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("conv1_1 0.1 0.2\n")
    _refused(text, tmp_path, "neither a MATLAB file", "nor a binary Torch7 file")

    other_mat = tmp_path / "other.mat"
    savemat(other_mat, {"x": np.ones(3)})
    _refused(other_mat, tmp_path, "without a MatConvNet net")

    v73 = tmp_path / "v73.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" "))
    _refused(v73, tmp_path, "v7.3", "'-v7'")

    caffe = tmp_path / "VGG_FACE.caffemodel"
    caffe.write_bytes(b"\n\x10VGG_FACE_16_layers")
    _refused(caffe, tmp_path, "Caffe release is not read")

    table = write_t7(tmp_path / "table.t7", {"weights": np.ones(3, np.float32)})
    _refused(table, tmp_path, "not an nn.Sequential")

    linear = write_t7(
        tmp_path / "linear.t7", TorchClass("nn.Linear", {"weight": np.ones((2, 2), np.float32)})
    )
    _refused(linear, tmp_path, "holding a nn.Linear")


def test_a_truncated_or_code_carrying_t7_is_refused(tmp_path):
    whole, _ = release(tmp_path, "torch7")
    cut = tmp_path / "cut.t7"
    cut.write_bytes(whole.read_bytes()[:5000])
    _refused(cut, tmp_path, "truncated")

    function = tmp_path / "function.t7"
    # a table holding a Lua function (type 6): its bytecode must never be run
    function.write_bytes(
        np.array([3, 1, 1], "<i4").tobytes()  # a table, reference 1, one pair
        + np.array([2, 1], "<i4").tobytes() + b"f"  # key "f"
        + np.array([6], "<i4").tobytes() + b"\x1bLua"  # value: a function
    )  # fmt: skip
    _refused(function, tmp_path, "Lua function")


def test_the_command_converts_and_reports_errors_without_a_traceback(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("convert", REPO / "tools/convert_vggface.py")
    command = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(command)
    source, _ = release(tmp_path, "torch7")
    assert command.main([str(source), str(tmp_path / "vgg_face.pt")]) == 0
    out = capsys.readouterr().out
    assert "BGR input, now RGB" in out and "[129.1863, 104.7624, 93.594]" in out
    assert command.main([str(tmp_path / "missing.t7"), str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {tmp_path / 'missing.t7'}: no such file") and "Traceback" not in err
    )


# --- the start check ---------------------------------------------------------------------


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, SCHEMA, set_default=True)
    return config


def test_by_default_the_cnns_start_from_vgg_face_and_the_demo_from_scratch():
    default = validated(MINIMAL)["models"]
    fi = validated(yaml.safe_load((REPO / "config/first_impressions.yaml").read_text()))["models"]
    demo = validated(yaml.safe_load((REPO / "config.yaml").read_text()))["models"]
    for model in CNN_MODELS:
        assert {**default["visual"], **default[model]}["weights"] == "resources/vgg_face.pt"
        assert {**fi["visual"], **fi[model]}["weights"] == "resources/vgg_face.pt"
        assert {**demo["visual"], **demo[model]}["weights"] is None  # chosen explicitly
    check_backbone_settings(demo, CNN_MODELS)  # from scratch: nothing to check


def test_a_missing_vgg_face_file_stops_naming_key_file_and_readme(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = validated(MINIMAL)["models"]
    with pytest.raises(UserError) as err:
        check_backbone_settings(models, CNN_MODELS)
    message = str(err.value)
    for text in (
        "models.visual.weights",
        f"{tmp_path / 'resources' / 'vgg_face.pt'}",
        "tools/convert_vggface.py",
        'README.md, "Starting from VGG-Face"',
        "models.visual.weights: null",
    ):
        assert text in message, message
    # the control: from scratch, chosen explicitly, for every model or in models.visual
    models["visual"]["weights"] = None
    check_backbone_settings(models, CNN_MODELS)
    models = validated(MINIMAL)["models"]
    for model in CNN_MODELS:
        models[model]["weights"] = None
    check_backbone_settings(models, CNN_MODELS)


@pytest.fixture
def converted(tmp_path, monkeypatch) -> dict:
    """A converted VGG-Face file at resources/vgg_face.pt (width / 16) and the default
    models section at that width."""
    monkeypatch.chdir(tmp_path)
    source, _ = release(tmp_path, "matconvnet")
    convert_vgg_face(source, tmp_path / "resources" / "vgg_face.pt")
    models = validated(MINIMAL)["models"]
    models["visual"]["width_divisor"] = DIVISOR
    return models


def test_a_fitting_file_passes_the_start_check(converted):
    check_backbone_settings(converted, CNN_MODELS)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m: m["visual"].update(input_scale=0.015625), "models.visual.input_scale: 1 "),
        (lambda m: m["face"].update(mean_rgb=[128.0, 128.0, 128.0]), "models.face.mean_rgb: ["),
        (lambda m: m["img"].update(input_norm="per_image"), "models.img.input_norm: dataset_mean"),
        (lambda m: m["visual"].update(width_divisor=8), "models.visual.width_divisor to 16"),
        (lambda m: m["img_cam"].update(width_divisor=1), "models.img_cam.width_divisor to 16"),
        (lambda m: m["face"].update(weights="resources/other.pt"), "models.face.weights"),
    ],
)
def test_settings_the_file_contradicts_stop_naming_the_key(converted, change, named):
    change(converted)
    with pytest.raises(UserError) as err:
        check_backbone_settings(converted, CNN_MODELS)
    assert named in str(err.value), str(err.value)


@pytest.mark.workflow
def test_the_workflow_stops_at_start_without_the_file(tmp_path):
    """A First Impressions config that starts from VGG-Face, without the file: the dry
    run stops before any job, with the start check's message."""
    fi_layout(tmp_path, {"training": ["a.001"], "validation": ["b.001"], "test": ["c.001"]})
    config = fi_config(tmp_path)
    del config["models"]["visual"]["weights"]  # the demo's explicit null: back to the default
    result = run_snakemake(tmp_path, write_config(tmp_path / "fi.yaml", config), "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "models.visual.weights: the backbone weights file resources/vgg_face.pt" in output
    assert "Job stats" not in output and not (tmp_path / "results").exists()
