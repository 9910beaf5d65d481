# Shared set-up: config validation, the data set's videos and their shards.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))

from traitlens.errors import UserError  # noqa: E402
from traitlens.sharding import assign_shards, shard_count  # noqa: E402
from traitlens.sources import dataset_videos  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

DATASET = config["dataset"]
RESULTS = f"results/{DATASET['name']}"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"

try:
    VIDEOS = dataset_videos(DATASET, config.get("demo"))
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


def au_inputs(wildcards):
    """The faces file; the detector backend also crops from the frames file."""
    inputs = {"faces": f"{RESULTS}/faces/{wildcards.shard}.h5"}
    if config["aus"]["backend"] == "detector":
        inputs["frames"] = f"{RESULTS}/frames/{wildcards.shard}.h5"
    return inputs


# --- models ---------------------------------------------------------------------------

VISUAL_MODELS = ("img", "face")
# The linear and fused models, and the order the accuracy table lists them in
EVALUATED_MODELS = ("img+audio", "img", "face", "audio", "aus")


wildcard_constraints:
    model="img|face",
    linear="audio|aus",


def visual_inputs(wildcards):
    """Shard files a visual model reads: frames for img, aligned faces for face."""
    folder = "frames" if wildcards.model == "img" else "faces"
    return per_shard(f"{RESULTS}/{folder}/{{shard}}.h5")


def visual_settings(wildcards):
    """models.visual with the model's own keys (models.img / models.face) on top."""
    return {**config["models"]["visual"], **config["models"][wildcards.model]}


def linear_model_features(wildcards):
    """Per-shard inputs of a ridge model: audio features, or the per-video AU means."""
    if wildcards.linear == "audio":
        return per_shard(f"{RESULTS}/audio/{{shard}}.h5")
    return per_shard(f"{RESULTS}/aus/{{shard}}.videos.tsv")


def model_predictions(model):
    return f"{RESULTS}/models/{model}/predictions.tsv"


TRAIN_RESOURCES = {"gpu": 1} if config["train"]["gpu"] else {}
