# Shared set-up: config validation, the data set's videos and their shards.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))

from traitlens.core.errors import UserError  # noqa: E402
from traitlens.faces.face_landmarks import REGIONS as REGION_NAMES  # noqa: E402
from traitlens.ingest.labels import BIG_FIVE as TRAITS  # noqa: E402
from traitlens.ingest.sharding import assign_shards, shard_count  # noqa: E402
from traitlens.demo.plan import plan_videos  # noqa: E402
from traitlens.ingest.sources import dataset_videos  # noqa: E402

# The one check of the config: keys, types, bounds; every default filled in here, so the
# rules and their settings classes (traitlens.core.config) see complete sections.
validate(config, "../schemas/config.schema.yaml", set_default=True)

DATASET = config["dataset"]
RESULTS = f"results/{DATASET['name']}"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"

try:
    DEMO_IDS = (
        [v.video_id for v in plan_videos(config["demo"])]
        if DATASET["format"] == "demo"
        else None
    )
    VIDEOS = dataset_videos(DATASET, DEMO_IDS)
except UserError as err:
    raise WorkflowError(str(err)) from None
if not VIDEOS:
    raise WorkflowError(
        f"dataset '{DATASET['name']}': no videos found; check dataset.videos / dataset.manifest"
    )

VIDEO_PATH = {v.video_id: v.path for v in VIDEOS}
N_SHARDS = shard_count(
    len(VIDEOS),
    config["sharding"]["videos_per_shard"],
    config["sharding"].get("n_shards"),
)
SHARDS = assign_shards(VIDEO_PATH, N_SHARDS)
SHARD_OF = {video_id: shard for shard, ids in SHARDS.items() for video_id in ids}


wildcard_constraints:
    shard=r"s[0-9]+",


def shard_video_ids(wildcards):
    return SHARDS[wildcards.shard]


def shard_video_paths(wildcards):
    return [VIDEO_PATH[v] for v in SHARDS[wildcards.shard]]


def video_table():
    """[video_id, path, shard] for every video: what ingest joins with the labels."""
    return [[v, VIDEO_PATH[v], SHARD_OF[v]] for v in sorted(VIDEO_PATH)]


def per_shard(pattern):
    return expand(pattern, shard=sorted(SHARDS))


def label_inputs(wildcards):
    """The label files ingest reads: the three pickles, or the user's manifest."""
    if DATASET["format"] == "manifest":
        return {"manifest": DATASET["manifest"]}
    return dict(DATASET["annotations"])


def planted_validation():
    """Outputs scored against the planted truth: only the demo data set has one."""
    if DATASET["format"] != "demo":
        return []
    return [f"{RESULTS}/validation/aus.tsv", f"{RESULTS}/figures/au_validation.png"]


def result_settings(section, *run_keys):
    """A config section without its keys that only say where or how fast a job runs.

    A rule's params hold only what changes its outputs: Snakemake re-runs a job when a
    param changes. The rule function reads the run keys from the config instead.
    """
    return {k: v for k, v in section.items() if k not in run_keys}


# aus.baseline person: a person's clips lie in several shards, so the shards' estimates
# go to aus/uncalibrated/ and calibrate_aus writes the aus/ tables every later rule reads
PERSON_BASELINE = config["aus"]["baseline"] == "person"
AU_ESTIMATES = f"{RESULTS}/aus/uncalibrated" if PERSON_BASELINE else f"{RESULTS}/aus"
BASELINE_KEYS = ("baseline", "baseline_percentile")


def shard_au_settings():
    """estimate_aus's params: with the person baseline the shards' estimates carry none
    (calibrate_aus applies it), so its settings do not re-run them."""
    settings = result_settings(config["aus"], "detector_batch", "detector_device")
    if PERSON_BASELINE:
        return {k: v for k, v in settings.items() if k not in BASELINE_KEYS}
    return settings


def au_inputs(wildcards):
    """The faces file; the detector backend also crops from the frames file."""
    inputs = {"faces": f"{RESULTS}/faces/{wildcards.shard}.h5"}
    if config["aus"]["backend"] == "detector":
        inputs["frames"] = f"{RESULTS}/frames/{wildcards.shard}.h5"
    return inputs


# --- models ---------------------------------------------------------------------------

VISUAL_MODELS = ("img", "face")
# The CAM variants (docs/method.md §2), trained on the same data as img / face
CAM_MODELS = ("img_cam", "face_cam")
# The linear and fused models, and the order the accuracy table lists them in
EVALUATED_MODELS = ("img+audio", "img", "face", "audio", "aus")


wildcard_constraints:
    model="img|face|img_cam|face_cam",
    linear="audio|aus",


def model_kind(model):
    """What a visual model sees: img (frames) or face (aligned crops)."""
    return "img" if model in ("img", "img_cam") else "face"


def shard_data(kind):
    """The shard files with a kind's pixels: frames for img, aligned faces for face."""
    folder = "frames" if kind == "img" else "faces"
    return per_shard(f"{RESULTS}/{folder}/{{shard}}.h5")


def visual_inputs(wildcards):
    return shard_data(model_kind(wildcards.model))


def model_settings(model):
    """models.visual with the model's own keys (e.g. models.img) on top."""
    return {**config["models"]["visual"], **config["models"][model]}


def visual_settings(wildcards):
    return model_settings(wildcards.model)


# The CNNs' backbone weights (README, "Starting from VGG-Face"): a named file that is
# missing or does not fit its model's settings stops the run here, before any job. torch
# is imported only when a file is named (the demo trains from scratch), and only in the
# process the user started: a cluster job parses the Snakefile again, and would import
# torch and read the file again (1-3 s a job) for a check already passed.
CNN_MODELS = (*VISUAL_MODELS, *CAM_MODELS)
if workflow.is_main_process and any(model_settings(m)["weights"] for m in CNN_MODELS):
    from traitlens.models.weights import check_backbone_settings

    try:
        check_backbone_settings(config["models"], CNN_MODELS)
    except UserError as err:
        raise WorkflowError(str(err)) from None


def linear_model_features(wildcards):
    """Per-shard inputs of a ridge model: audio features, or the per-video AU means."""
    if wildcards.linear == "audio":
        return per_shard(f"{RESULTS}/audio/{{shard}}.h5")
    return per_shard(f"{RESULTS}/aus/{{shard}}.videos.tsv")


def model_predictions(model):
    return f"{RESULTS}/models/{model}/predictions.tsv"


# train.gpu and train.threads set the PyTorch jobs' resources and threads; the rule functions
# read train.device, train.num_workers and the inference batch sizes from the config. None
# of them changes a result, so none is a param and a change re-runs nothing; train.amp
# (bfloat16 on CUDA) does, and is one.
TRAIN_RESOURCES = {"gpu": 1} if config["train"]["gpu"] else {}


# --- interpretability -----------------------------------------------------------------

ANALYSIS = config["analysis"]
ACTIVATIONS = config["activations"]
DUMP_LAYERS = ACTIVATIONS["layers"]
# CAM sources (docs/method.md §2): the CAM variants on frames and on faces, and Grad-CAM of
# the DAN+ image model as a cross-check; the weights each one reads
CAM_SOURCES = {"img": "img_cam", "face": "face_cam", "img_gradcam": "img"}
# Sources whose maps lie over whole frames, so their overlap with the face box means something
FRAME_CAM_SOURCES = ("img", "img_gradcam")
# The controls (docs/validation.md): the same analyses on an untrained network of the same
# architecture (rule init_random_model), named <source or model>_random_init
RANDOM_INIT = "_random_init"
CONTROL_CAM_SOURCES = {f"img{RANDOM_INIT}": "img_cam"}


wildcard_constraints:
    source="|".join([*CAM_SOURCES, *CONTROL_CAM_SOURCES]),
    layer="|".join(DUMP_LAYERS),
    # whose activations are dumped: a trained model, or its untrained control
    dumped="|".join(
        f"{m}{suffix}" for m in VISUAL_MODELS for suffix in ("", RANDOM_INIT)
    ),


def model_inputs(model, weights="weights.pt"):
    """A visual model's weights (trained: weights.pt; its control: random_init.pt), the
    labels and the shard files it reads."""
    return {
        "weights": f"{RESULTS}/models/{model}/{weights}",
        "labels": f"{RESULTS}/manifest.tsv",
        "data": shard_data(model_kind(model)),
    }


def dumped_model_inputs(wildcards):
    model = wildcards.dumped.removesuffix(RANDOM_INIT)
    control = wildcards.dumped.endswith(RANDOM_INIT)
    return model_inputs(model, "random_init.pt" if control else "weights.pt")


def cam_model(source):
    return {**CAM_SOURCES, **CONTROL_CAM_SOURCES}[source]


def cam_inputs(wildcards):
    control = wildcards.source in CONTROL_CAM_SOURCES
    return model_inputs(
        cam_model(wildcards.source), "random_init.pt" if control else "weights.pt"
    )


def cam_data(wildcards):
    return shard_data(model_kind(cam_model(wildcards.source)))


def cam_figures(source):
    return [f"{RESULTS}/figures/cam_{source}_{trait}.png" for trait in TRAITS]


def dumps(model):
    return [f"{RESULTS}/activations/{model}/{layer}.h5" for layer in DUMP_LAYERS]


def interpretability_outputs():
    """What rule all asks of the interpretability stage (docs/method.md §2, 4, 5)."""
    outputs = [f for source in CAM_SOURCES for f in cam_figures(source)]
    outputs.append(f"{RESULTS}/tables/cam_face_overlap.tsv")
    for model in ACTIVATIONS["models"]:
        outputs += dumps(model)
        outputs += [
            f"{RESULTS}/figures/units_{model}_{layer}.png" for layer in DUMP_LAYERS
        ]
    if "face" in ACTIVATIONS["models"]:
        outputs += [
            f"{RESULTS}/tables/detectors.tsv",
            f"{RESULTS}/tables/au_emergence.tsv",
        ]
        if DATASET["format"] == "demo":
            outputs.append(f"{RESULTS}/validation/planted.json")
    return outputs
