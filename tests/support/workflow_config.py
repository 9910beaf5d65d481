"""Configs for tests: First Impressions-shaped inputs and the demo settings tests pin."""

from __future__ import annotations

from traitlens.ingest.labels import BIG_FIVE

from support.pickles import python2_label_pickle
from support.workflow import default_config, write_config

TRAITS = (*BIG_FIVE, "interview")


def fi_layout(root, ids_by_split):
    """A First Impressions-shaped tree: zips unpacked into sub-folders, three pickles."""
    for n, (split, ids) in enumerate(ids_by_split.items()):
        folder = root / "videos" / f"{split}-1" / f"{split}80_0{n}"
        folder.mkdir(parents=True)
        for video_id in ids:
            (folder / f"{video_id}.mp4").write_bytes(b"placeholder")
        labels = {t: {f"{v}.mp4": 0.5 for v in ids} for t in TRAITS}
        (root / f"annotation_{split}.pkl").write_bytes(python2_label_pickle(labels))


def fi_config(root, **extract):
    config = default_config()
    config["dataset"] = {
        "name": "fi",
        "format": "first_impressions",
        "videos": str(root / "videos"),
        "annotations": {
            s: str(root / f"annotation_{s}.pkl") for s in ("training", "validation", "test")
        },
    }
    config["extract"].update(extract)
    return config


def full_corpus_layout(root):
    """10,000 placeholder files with First Impressions' names and folders, 3 pickles."""
    ids = {
        "training": [f"-t{i:09d}.{i % 7:03d}" for i in range(6000)],
        "validation": [f"v{i:010d}.001" for i in range(2000)],
        "test": [f"e{i:010d}.002" for i in range(2000)],
    }
    fi_layout(root, ids)
    config = fi_config(root)
    config["sharding"]["n_shards"] = 128  # as config/first_impressions.yaml pins it
    return write_config(root / "fi.yaml", config)


# The demo settings the demo-plan tests pin (the config.yaml defaults when written);
# pinned here so a change of the user-facing default does not silently move them.
DEMO_TEST_CONFIG = {
    "seed": 7,
    "n_videos": 60,
    "n_identities": 12,
    "duration_s": 4.0,
    "fps": 30,
    "width": 384,
    "height": 216,
    "noise_sd": 0.04,
    "ground_truth": "resources/demo/ground_truth",
}
