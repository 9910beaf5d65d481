"""A First Impressions-sized sample: the demo generator's clips at the corpus' size (15 s,
1280x720, 30 fps, H.264 + AAC), named (`<11-char YouTube id>.<NNN>.mp4`), foldered (the
unzipped `train-*/training80_*` ... archives) and labelled (three Python 2 annotation
pickles) as the real corpus is, with one labelled clip cut short as a download that
stopped midway. The planted truth goes to `ground_truth/` beside them.

Used by tests/test_workflow_first_impressions.py (the smallest sample that exercises
every path) and bench/bench_first_impressions.py (a sample that measures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from support.media import truncate_half
from support.workflow import REPO, write_config

# The corpus' clips (ChaLearn First Impressions V2)
FI_CLIP = {"duration_s": 15.0, "fps": 30, "width": 1280, "height": 720}
# The unzipped archives' folders, one per split, as the corpus unpacks
SPLIT_FOLDERS = {
    "training": "train-1/training80_01",
    "validation": "val-1/validation80_01",
    "test": "test-1/test80_01",
}
SHIPPED_CONFIG = REPO / "config" / "first_impressions.yaml"


@dataclass(frozen=True)
class Sample:
    root: Path
    videos: Path  # the folder dataset.videos names
    annotations: dict[str, Path]  # split -> annotation pickle
    ground_truth: Path  # the generator's planted truth (frames.tsv, videos.tsv)
    video_ids: dict[str, str]  # video id -> split, every labelled clip
    truncated: str  # the labelled clip cut in half


def make_sample(
    root: Path,
    n_videos: int,
    n_identities: int,
    duration_s: float = FI_CLIP["duration_s"],
    threads: int = 2,
    seed: int = 7,
) -> Sample:
    """``n_videos`` clips of ``n_identities`` persons (split 60/20/20 by person) at the
    corpus' frame size and rate, and one more labelled clip of the first training person
    that is cut in half (a copy of that person's first clip, so it costs no rendering)."""
    from traitlens.demo.fi_pickle import dumps_labels
    from traitlens.demo.generate import generate
    from traitlens.demo.plan import plan_videos
    from traitlens.ingest.labels import load_label_pickle

    demo = {
        **FI_CLIP,
        "duration_s": duration_s,
        "seed": seed,
        "n_videos": n_videos,
        "n_identities": n_identities,
    }
    plan = plan_videos(demo)
    videos = root / "videos"
    paths = [videos / SPLIT_FOLDERS[v.split] / v.filename for v in plan]
    annotations = {split: root / f"annotation_{split}.pkl" for split in SPLIT_FOLDERS}
    generate(demo, paths, annotations, root / "ground_truth", threads=threads, progress=False)

    # the person's next clip number, as First Impressions cuts several clips per video
    source = next(v for v in plan if v.split == "training")
    last = max(v.clip for v in plan if v.user_id == source.user_id)
    cut_id = f"{source.user_id}.{last + 1:03d}"
    folder = videos / SPLIT_FOLDERS["training"]
    truncate_half(folder / source.filename, folder / f"{cut_id}.mp4")
    labels = load_label_pickle(annotations["training"])
    for values in labels.values():
        values[f"{cut_id}.mp4"] = values[source.filename]
    annotations["training"].write_bytes(dumps_labels(labels))
    return Sample(
        root=root,
        videos=videos,
        annotations=annotations,
        ground_truth=root / "ground_truth",
        video_ids={**{v.video_id: v.split for v in plan}, cut_id: "training"},
        truncated=cut_id,
    )


def overrides(sample: Sample, weights: Path, epochs: int = 1) -> Path:
    """The config listed after config/first_impressions.yaml: its placeholder paths pointed
    at the sample, and the two settings changed to fit 2 cores: the epochs and the
    backbone weights file. Every other setting is the shipped file's."""
    config = {
        "dataset": {
            "videos": str(sample.videos),
            "annotations": {split: str(path) for split, path in sample.annotations.items()},
        },
        "models": {"visual": {"epochs": epochs, "weights": str(weights)}},
    }
    return write_config(sample.root / "overrides.yaml", config)


def vgg_face_state_dict(path: Path, seed: int = 0) -> Path:
    """VGG-Face's 13 conv layers at full width as PyTorch ``conv1_1.weight`` ... keys (the
    layout of VGG-Face converted to PyTorch, e.g. vgg_face_dag.pth), plus its fc6-fc8,
    which the loader ignores. Random filters (He-scaled): the real file cannot be
    downloaded here; what is tested is that the run starts from the file it is given."""
    import torch

    from traitlens.models.dan import VGG16_BLOCKS

    generator = torch.Generator().manual_seed(seed)
    state, in_ch = {}, 3
    for block, (n_convs, width) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            std = (2.0 / (9 * in_ch)) ** 0.5
            state[f"conv{block}_{i}.weight"] = (
                torch.randn(width, in_ch, 3, 3, generator=generator) * std
            )
            state[f"conv{block}_{i}.bias"] = torch.zeros(width)
            in_ch = width
    for name, shape in (("fc6", (4096, 512 * 7 * 7)), ("fc7", (4096, 4096)), ("fc8", (2622, 4096))):
        state[f"{name}.weight"] = torch.zeros(shape[0], 1).expand(shape)  # unread: no bytes
        state[f"{name}.bias"] = torch.zeros(shape[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
