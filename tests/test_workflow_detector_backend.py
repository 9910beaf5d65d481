"""py-feat's own AU network (``aus.backend: detector``) through the workflow, end to end.

Real mp4 files of real face photos (tests/support/bad_inputs.py) go through ingest,
extraction, mediapipe and the AU stage of one shard, plus the Fex export of that shard.
The network is py-feat's MEGraphAUv2 in the shipped checkpoint's configuration
(20 AUs, 7 emotions, 52 blendshapes) on the small convnextv2_atto backbone, its random
weights saved the way py-feat ships them (safetensors, config in the metadata), made in
a temporary folder: nothing is downloaded, nothing committed. Random weights say nothing
about AU accuracy; what is tested is that the backend runs, one row per frame, on the
probability scale, with empty rows where no face was found, and that the export is a
Fex with the same numbers.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from traitlens.aus.detector_backend import estimate_with_detector
from traitlens.aus.estimate_aus import (
    PYFEAT_AUS,
    AuConfig,
    estimate_shard,
    read_frame_table,
)
from traitlens.aus.fex_export import to_fex
from traitlens.core.errors import UserError
from traitlens.faces.faces_file import read_faces
from traitlens.ingest.sharding import assign_shards

from support import bad_inputs as bi
from support.workflow import run_snakemake, write_config
from support.workflow_config import fi_config

pytestmark = pytest.mark.workflow

NAME = "det"
WEIGHTS_FILE = "face_multitask_v28.safetensors"
# A face throughout, a face leaving the picture (its last frames have none), no face at all
SPLITS = {"training": ["face_leaves.001"], "validation": ["astronaut.001"], "test": ["no_face.001"]}
VIDEOS = [v for ids in SPLITS.values() for v in ids]
(SHARD,) = assign_shards(VIDEOS, 1)


def random_multitask_weights(folder):
    """py-feat's multitask network with random weights, saved as py-feat ships its own
    (``feat.multitask.inference`` reads the config back from the metadata)."""
    import torch
    from feat.multitask.model_v2 import MEGraphAUv2, ModelV2Config
    from safetensors.torch import save_file

    cfg = ModelV2Config(
        backbone="convnextv2_atto",
        afg_channels=32,
        mefl_channels=32,
        unified_lmk_dim=32,
        n_au=20,
        n_emotion=7,
        use_head_v3=True,  # the shipped head; without it the 20-AU config does not build
        drop_mefl=True,
        emotion_use_au_prob=True,
        n_blendshape=52,
        mesh_normalized=True,
        pretrained=False,
    )
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in MEGraphAUv2(cfg).state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / WEIGHTS_FILE, metadata={"config": json.dumps(asdict(cfg))})
    return folder


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return random_multitask_weights(tmp_path_factory.mktemp("pyfeat_weights"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, weights_dir):
    root = tmp_path_factory.mktemp("detector")
    for split, ids in SPLITS.items():
        bi.write_videos(root / "videos" / f"{split}-1" / f"{split}80_01", ids)
    bi.write_label_pickles(root, SPLITS)
    config = fi_config(root)
    config["dataset"]["name"] = NAME
    config["sharding"]["n_shards"] = 1
    config["aus"].update(backend="detector", detector_weights_dir=str(weights_dir))
    configfile = write_config(root / "det.yaml", config)
    targets = [f"results/{NAME}/aus/{SHARD}.tsv", f"results/{NAME}/aus/{SHARD}.fex.csv"]
    result = run_snakemake(root, configfile, *targets)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "results" / NAME


def made_with(table: pd.DataFrame) -> set[tuple[str, str, str]]:
    """The distinct (backend, scale, baseline) the rows of an AU table record."""
    return set(table[["au_backend", "au_scale", "au_baseline"]].itertuples(index=False, name=None))


def test_one_row_per_frame_of_probabilities_empty_where_no_face(run):
    faces = read_faces(run / f"faces/{SHARD}.h5")
    table = read_frame_table(run / f"aus/{SHARD}.tsv")
    assert list(table["video_id"]) == list(faces.row_video_ids())
    assert list(table["frame_index"]) == list(faces.frame_index)
    assert list(table["success"]) == list(faces.success)
    # the default config's person baseline (calibrate_aus) on the network's probabilities
    assert made_with(table) == {("detector", "probability", "person_p5")}
    before = read_frame_table(run / f"aus/uncalibrated/{SHARD}.tsv")
    assert made_with(before) == {("detector", "probability", "none")}

    values = table[list(PYFEAT_AUS)].to_numpy()
    with_face = values[faces.success]
    assert np.isfinite(with_face).all()
    assert ((with_face >= 0) & (with_face <= 1)).all()
    assert np.ptp(with_face, axis=0).max() > 0  # the network saw each crop, not a constant
    assert np.array_equal(table.loc[faces.success, "AU45"], table.loc[faces.success, "AU43"])
    assert np.isnan(values[~faces.success]).all()
    # the cases the clips were made for: a face throughout, one that leaves, none
    by_video = table.groupby("video_id")["success"]
    assert by_video.all()["astronaut.001"]
    assert 0 < by_video.sum()["face_leaves.001"] < by_video.size()["face_leaves.001"]
    assert not by_video.any()["no_face.001"]

    videos = pd.read_csv(run / f"aus/{SHARD}.videos.tsv", sep="\t").set_index("video_id")
    assert made_with(videos) == {("detector", "probability", "person_p5")}
    assert videos.loc["no_face.001", "n_frames"] == 0
    assert videos.loc["no_face.001", list(PYFEAT_AUS)].isna().all()


def test_the_mesh_backend_on_the_same_faces_records_intensities(run):
    # negative control: the same check on a mesh-backend table shows the other backend
    frames, videos = estimate_shard(run / f"faces/{SHARD}.h5", AuConfig(backend="mesh"))
    assert made_with(frames) == made_with(videos) == {("mesh", "intensity", "none")}


def test_a_corrupt_weights_file_is_named(run, weights_dir, tmp_path, one_torch_thread):
    bad = tmp_path / WEIGHTS_FILE
    data = (weights_dir / WEIGHTS_FILE).read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # a download cut short
    rows = read_faces(run / f"faces/{SHARD}.h5")
    frames = run / f"frames/{SHARD}.h5"
    with pytest.raises(UserError) as err:
        estimate_with_detector(rows, frames, AuConfig(detector_weights_dir=str(tmp_path)))
    message = str(err.value)
    assert str(bad) in message and "not a py-feat multitask weights file" in message
    assert "huggingface.co/py-feat/face_multitask_v2" in message
    # control: the intact file in the same place loads and runs
    shutil.copyfile(weights_dir / WEIGHTS_FILE, bad)
    ok = estimate_with_detector(rows, frames, AuConfig(detector_weights_dir=str(tmp_path)))
    assert np.isfinite(ok[rows.success]).all()


def test_the_export_loads_as_a_fex_with_the_same_numbers(run):
    from feat import Fex
    from feat.utils.io import read_feat

    table = read_frame_table(run / f"aus/{SHARD}.tsv")
    for fex in (read_feat(str(run / f"aus/{SHARD}.fex.csv")), to_fex(table)):
        assert isinstance(fex, Fex)
        assert list(fex.aus.columns) == list(PYFEAT_AUS)
        assert np.array_equal(
            fex.aus.to_numpy(), table[list(PYFEAT_AUS)].to_numpy(), equal_nan=True
        )
        assert list(fex["input"]) == list(table["video_id"])
        assert list(fex["frame"]) == list(table["frame_index"])
        assert set(fex["au_scale"]) == {"probability"}
