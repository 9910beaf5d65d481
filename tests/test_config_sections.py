"""The config is checked once, by the schema; the settings classes are built from it.

schemas/config.schema.yaml holds every key's type, bounds and default; the workflow
validates with the defaults filled in (rules/common.smk). The seven settings classes are
built from the validated sections by traitlens.core.config.from_section, and their own
defaults must be the schema's.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from traitlens.aus.estimate_aus import AuConfig
from traitlens.aus.mesh_backend import MeshParams
from traitlens.core.config import from_section
from traitlens.demo.plan import DemoConfig
from traitlens.faces.video_faces import FaceParams
from traitlens.models.dan import DanConfig
from traitlens.models.train import TrainConfig
from traitlens.models.visual_model import RunConfig

from support.workflow import REPO

SCHEMA = str(REPO / "schemas/config.schema.yaml")
MINIMAL = {"dataset": {"name": "mine", "format": "manifest", "manifest": "videos.tsv"}}
VISUAL_MODELS = ("img", "face", "img_cam", "face_cam")


def validated(config: dict) -> dict:
    """``config`` checked by the schema with the defaults filled in, as the workflow does."""
    config = copy.deepcopy(config)
    validate(config, SCHEMA, set_default=True)
    return config


def model_settings(config: dict, model: str) -> dict:
    """As rules/common.smk's visual_settings: models.visual with the model's keys on top."""
    return {**config["models"]["visual"], **config["models"][model]}


def sections(config: dict) -> dict:
    """Every settings class with the validated section it is built from."""
    return {
        DemoConfig: config["demo"],
        FaceParams: config["faces"],
        AuConfig: config["aus"],
        MeshParams: config["aus"]["mesh"],
        RunConfig: config["train"],
        DanConfig: model_settings(config, "img"),
        TrainConfig: model_settings(config, "img"),
    }


def test_a_minimal_config_gets_every_default():
    config = validated(MINIMAL)
    assert set(config) == set(yaml.safe_load(open(SCHEMA))["properties"])
    assert config["extract"]["audio"]["n_mels"] == 40  # nested sections are filled too
    assert config["aus"]["mesh"]["region_weights"]["nose"] == 0.3
    assert config["models"]["img"] == {} and config["models"]["img_cam"] == {"head": "cam"}


def test_dataclass_defaults_are_the_schema_defaults():
    """A class's defaults serve callers that skip the schema (tests, bench scripts, weights
    saved before a field existed); they must be what the schema fills in."""
    for cls, section in sections(validated(MINIMAL)).items():
        assert cls.from_mapping(section) == cls(), cls.__name__
        fields = {f.name for f in dataclasses.fields(cls)} - {"n_outputs"}  # not a setting
        assert fields <= set(section), (cls.__name__, fields - set(section))


def test_the_schema_defaults_are_the_papers_visual_settings():
    """docs/method.md §1: VGG16 at 224, batch 32, 10 epochs, SGD, lr logspace(-3, -6),
    flips p=0.5, VGG-Face's mean; 10 frames per video; late fusion by averaging."""
    config = validated(MINIMAL)
    for model in VISUAL_MODELS:
        dan = DanConfig.from_mapping(model_settings(config, model))
        train = TrainConfig.from_mapping(model_settings(config, model))
        assert (dan.width_divisor, dan.batch_norm, dan.input_size) == (1, False, 224), model
        assert dan.head == ("cam" if model.endswith("_cam") else "dan_plus"), model
        assert (train.epochs, train.batch_size, train.optimizer) == (10, 32, "sgd"), model
        assert (train.lr_start, train.lr_end, train.flip_p) == (1e-3, 1e-6, 0.5), model
        assert not train.augmentation().enabled
    assert config["extract"]["frames_per_video"] == 10
    assert config["models"]["fusion"]["image_weight"] == 0.5


def test_the_demo_config_builds_every_class():
    config = validated(yaml.safe_load((REPO / "config.yaml").read_text()))
    built = {cls: cls.from_mapping(section) for cls, section in sections(config).items()}
    assert built[DemoConfig].n_videos == config["demo"]["n_videos"]
    assert built[DanConfig].width_divisor == 8 and built[DanConfig].input_size == 96
    assert built[TrainConfig].epochs == 20 and built[DanConfig].mean_rgb[2] == 93.594


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        ("faces.eye_y", 1.5, "['faces']['eye_y']"),
        ("faces.aligned_size", 112.5, "['faces']['aligned_size']"),
        ("faces.eye_dist", 0.3, "'eye_dist' was unexpected"),
        ("faces.min_detection_confidence", "high", "['faces']['min_detection_confidence']"),
        ("aus.backend", "openface", "['aus']['backend']"),
        ("aus.bakend", "mesh", "'bakend' was unexpected"),
        ("aus.mesh.ridg", 5, "'ridg' was unexpected"),
        ("aus.mesh.align", "lower", "['aus']['mesh']['align']"),
        ("aus.mesh.region_weights.cheeks", 1, "'cheeks' was unexpected"),
        ("demo.n_videos", 2, "['demo']['n_videos']"),
        ("demo.width", 383, "['demo']['width']"),
        ("demo.height", 48, "['demo']['height']"),
        ("demo.fps", "fast", "['demo']['fps']"),
        ("demo.background", "studio", "['demo']['background']"),
        ("train.threads", 0, "['train']['threads']"),
        ("models.visual.epochs", "ten", "['models']['visual']['epochs']"),
        ("models.img.crop_scale", [0.0, 1.0], "['models']['img']['crop_scale'][0]"),
        ("models.img.crop_scale", [0.5, 1.2], "['models']['img']['crop_scale'][1]"),
        ("models.face.crop_aspect", 2.5, "['models']['face']['crop_aspect']"),
        ("models.face.jitter", 0.95, "['models']['face']['jitter']"),
        ("models.face_cam.color_jitter", -0.1, "['models']['face_cam']['color_jitter']"),
    ],
)
def test_a_bad_value_stops_at_the_schema_naming_the_key(path, value, named):
    config = copy.deepcopy(MINIMAL)
    *parents, key = path.split(".")
    section = config
    for name in parents:
        section = section.setdefault(name, {})
    section[key] = value
    with pytest.raises(WorkflowError) as err:
        validated(config)
    assert named in str(err.value), str(err.value)
    validated(MINIMAL)  # the control: the same config without the bad value passes


def test_a_missing_required_key_stops_at_the_schema_naming_it():
    for key in ("name", "format", "manifest"):
        config = copy.deepcopy(MINIMAL)
        del config["dataset"][key]
        with pytest.raises(WorkflowError, match=f"'{key}' is a required property"):
            validated(config)


def test_from_section_takes_the_fields_and_nothing_else():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        size: int
        scale: float = 1.0
        pair: tuple[float, float] = (0.0, 1.0)

    built = from_section(Settings, {"size": 3, "scale": 2, "pair": [1, 2], "other": "x"}, "s")
    assert built == Settings(size=3, scale=2.0, pair=(1, 2))
    assert isinstance(built.scale, float) and isinstance(built.pair, tuple)
    assert from_section(Settings, {"size": 3}, "s") == Settings(size=3)
    assert from_section(Settings, {"size": True, "scale": True}, "s").scale is True  # no cast
    with pytest.raises(TypeError, match=r"config my\.section: no value for \['size'\]"):
        from_section(Settings, {"scale": 2.0}, "my.section")
