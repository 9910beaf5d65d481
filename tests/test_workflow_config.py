"""The workflow at parse time: schema validation, lint, and a First Impressions dry run."""

from __future__ import annotations

import copy
import subprocess

import pytest

from traitlens.ingest.labels import BIG_FIVE

from conftest import REPO, default_config, job_counts, run_snakemake, tool, write_config
from pickles import python2_label_pickle

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


def test_first_impressions_dry_run_lists_the_jobs(tmp_path):
    ids = {
        "training": [f"-train{i:04d}x.00{i % 3}" for i in range(30)],
        "validation": [f"val{i:07d}x.001" for i in range(10)],
        "test": [f"tst{i:07d}x.001" for i in range(10)],
    }
    fi_layout(tmp_path, ids)
    configfile = write_config(tmp_path / "fi.yaml", fi_config(tmp_path))
    result = run_snakemake(tmp_path, configfile, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr
    # 50 videos / 16 per shard -> 4 shards: 4 extraction jobs, one manifest, one QC table.
    counts = job_counts(result.stdout)
    assert counts["extract_shard"] == 4, result.stdout
    assert counts["build_manifest"] == 1 and counts["summarise_qc"] == 1
    assert "generate_demo" not in counts


def test_first_impressions_config_keeps_none_of_the_demos_per_model_choices():
    """A --configfile is merged over config.yaml key by key (Snakemake's update_config), so
    every per-model key the demo sets (input sizes, the image model's 20 epochs) must be set
    again by config/first_impressions.yaml, or the paper's settings silently change."""
    import yaml
    from snakemake.utils import update_config

    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    first_impressions = yaml.safe_load((REPO / "config/first_impressions.yaml").read_text())
    merged = copy.deepcopy(demo)
    update_config(merged, first_impressions)
    for model in ("img", "face", "img_cam", "face_cam"):
        assert set(demo["models"][model]) <= set(first_impressions["models"][model]), model
        settings = {**merged["models"]["visual"], **merged["models"][model]}
        assert settings["epochs"] == 10 and settings["input_size"] == 224, model  # the paper


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda c: c["extract"].update(frames_per_video="ten"), "frames_per_video"),
        (lambda c: c["extract"].update(framez=3), "framez"),
        (lambda c: c["dataset"].update(format="youtube"), "youtube"),
        (lambda c: c["ingest"].update(on_unmatched="ignore"), "on_unmatched"),
    ],
)
def test_invalid_config_names_the_key(tmp_path, change, expected):
    fi_layout(tmp_path, {"training": ["a.001"], "validation": ["b.001"], "test": ["c.001"]})
    config = copy.deepcopy(fi_config(tmp_path))
    change(config)
    result = run_snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), "-n")
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout


def test_missing_videos_folder_is_a_clear_error(tmp_path):
    config = fi_config(tmp_path)
    result = run_snakemake(tmp_path, write_config(tmp_path / "c.yaml", config), "-n")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "videos folder not found" in output and str(tmp_path / "videos") in output


def test_lint_is_clean():
    result = subprocess.run(
        [tool("snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_formatting_is_clean():
    for command in (
        [tool("ruff"), "check", "."],
        [tool("ruff"), "format", "--check", "."],
        [tool("snakefmt"), "--check", "Snakefile", "rules"],
    ):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


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


def test_full_corpus_dag_is_planned_in_shards(tmp_path):
    """The whole First Impressions DAG (10,000 videos) as a dry run: a few hundred jobs."""
    configfile = full_corpus_layout(tmp_path)
    result = run_snakemake(tmp_path, configfile, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["extract_shard"] == counts["detect_faces"] == counts["estimate_aus"] == 128
    assert counts["train_visual"] == 4 and counts["evaluate_models"] == 1
    assert counts["dump_activations"] == 1 and counts["find_detectors"] == 1
    assert counts["total"] <= 2000


def test_every_rule_names_a_pinned_conda_env():
    """conda is not reachable here, so --use-conda cannot run; what can be checked is
    that every rule names an env file that exists, parses and pins every package."""
    import re

    import yaml

    rules, envs = {}, set()
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=[ ]*rule \w+:)", smk.read_text())[1:]:
            name = re.search(r"rule (\w+):", block).group(1)
            conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            rules[name] = conda.group(1) if conda else None
    listed = subprocess.run(
        [tool("snakemake"), "--snakefile", str(REPO / "Snakefile"), "--list-rules"],
        capture_output=True, text=True, cwd=REPO, check=True,
    ).stdout.split()  # fmt: skip
    assert set(rules) == set(listed) - {"all"}, listed  # "all" runs nothing
    assert not [r for r, env in rules.items() if env is None], rules
    for env in set(rules.values()):
        path = (REPO / "rules" / env).resolve()
        assert path.is_file(), f"{env} (named by a rule) does not exist"
        envs.add(path)
    for path in envs:
        spec = yaml.safe_load(path.read_text())
        assert spec["channels"][0] == "conda-forge", path
        for dep in spec["dependencies"]:
            if isinstance(dep, dict):
                assert all(re.fullmatch(r"[\w.-]+==[\w.]+", p) for p in dep["pip"]), dep
            else:
                assert re.fullmatch(r"[\w.-]+=[\w.]+", dep), f"{path.name}: {dep} is not pinned"
