"""The workflow at parse time: schema validation, lint, and a First Impressions dry run."""

from __future__ import annotations

import copy
import subprocess

import pytest

from support.matconvnet_files import converted_vgg_face
from support.workflow import REPO, job_counts, run_snakemake, tool, write_config
from support.workflow_config import fi_config, fi_layout, full_corpus_layout


@pytest.mark.workflow
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


# Parses the workflow as `snakemake` does (config files, Snakefile, validation with the
# schema's defaults filled in) and prints the config the rules see.
EFFECTIVE_CONFIG = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

snakefile, workdir, *configfiles = sys.argv[1:]
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(p) for p in configfiles]),
        snakefile=Path(snakefile),
        workdir=Path(workdir),
    )
    print("EFFECTIVE_CONFIG " + json.dumps(workflow._workflow.config))
"""


def effective_config(workdir, *configfiles) -> dict:
    """The config the workflow's rules see in ``workdir`` given these --configfile's."""
    import json
    import sys

    result = subprocess.run(
        [sys.executable, "-c", EFFECTIVE_CONFIG, str(REPO / "Snakefile"), str(workdir)]
        + [str(c) for c in configfiles],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("EFFECTIVE_CONFIG "))
    return json.loads(line.removeprefix("EFFECTIVE_CONFIG "))


def visual_settings(config, model):
    """As rules/common.smk: models.visual with the model's own keys on top."""
    return {**config["models"]["visual"], **config["models"][model]}


# docs/method.md §1: DAN+ on VGG16 (VGG-Face's mean) at 224x224, batch 32, 10 epochs, SGD
# with lr logspace(-3, -6), random horizontal flips; 10 frames per video; fusion averages
PAPER_VISUAL = {
    "width_divisor": 1,
    "batch_norm": False,
    "input_size": 224,
    "input_scale": 1.0,
    "mean_rgb": [129.1863, 104.7624, 93.594],
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "sgd",
    "lr_start": 1e-3,
    "lr_end": 1e-6,
    "flip_p": 0.5,
}


@pytest.mark.workflow
def test_first_impressions_config_builds_on_the_papers_settings_not_the_demos(tmp_path):
    """config.yaml (the demo's sizes) is read only when no --configfile is given, so
    config/first_impressions.yaml gets the paper's settings from the schema's defaults and
    nothing of the demo's: its image model's 20 epochs, its input sizes, its narrow VGG."""
    import yaml

    fi_layout(tmp_path, {"training": ["a.001"], "validation": ["b.001"], "test": ["c.001"]})
    shipped = yaml.safe_load((REPO / "config/first_impressions.yaml").read_text())
    # the shipped file with only its placeholder paths pointed at the layout
    shipped["dataset"].update(fi_config(tmp_path)["dataset"], name="first_impressions")
    # it starts from VGG-Face: without the converted file the run stops at start
    converted_vgg_face(tmp_path / "resources" / "vgg_face.pt")
    fi = effective_config(tmp_path, write_config(tmp_path / "fi.yaml", shipped))

    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    (demo_dir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    demo = effective_config(demo_dir)  # no --configfile: `bash setup.sh demo`
    assert demo["dataset"]["format"] == "demo"

    for model in ("img", "face", "img_cam", "face_cam"):
        settings = visual_settings(fi, model)
        assert {k: settings[k] for k in PAPER_VISUAL} == PAPER_VISUAL, model
        assert settings["weights"] == "resources/vgg_face.pt", model
        assert settings["head"] == ("cam" if model.endswith("_cam") else "dan_plus"), model
        demo_settings = visual_settings(demo, model)
        assert demo_settings["input_size"] != 224 and demo_settings["width_divisor"] != 1
    assert visual_settings(demo, "img")["epochs"] == 20  # the demo's own choice
    assert fi["extract"]["frames_per_video"] == 10
    assert fi["models"]["fusion"]["image_weight"] == 0.5
    assert fi["faces"]["aligned_size"] == 224 and fi["train"]["gpu"] is True  # its own keys
    assert "models" not in shipped  # minimal: the paper's models come from the schema

    # listing config.yaml first still builds on the demo (the workflow tests' way)
    layered = effective_config(
        demo_dir,
        demo_dir / "config.yaml",
        write_config(tmp_path / "mine.yaml", {"demo": {"seed": 8}}),
    )
    assert layered["demo"]["seed"] == 8 and visual_settings(layered, "img")["epochs"] == 20


@pytest.mark.workflow
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


@pytest.mark.workflow
def test_missing_videos_folder_is_a_clear_error(tmp_path):
    config = fi_config(tmp_path)
    result = run_snakemake(tmp_path, write_config(tmp_path / "c.yaml", config), "-n")
    assert result.returncode != 0
    output = result.stderr + result.stdout
    assert "videos folder not found" in output and str(tmp_path / "videos") in output


@pytest.mark.workflow
def test_lint_is_clean():
    result = subprocess.run(
        [tool("snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.media
def test_formatting_is_clean():
    for command in (
        [tool("ruff"), "check", "."],
        [tool("ruff"), "format", "--check", "."],
        [tool("snakefmt"), "--check", "Snakefile", "rules"],
    ):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.mark.workflow
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


@pytest.mark.workflow
def test_every_rule_names_a_pinned_conda_env():
    """conda is not reachable here, so --sdm conda cannot run; what can be checked is
    that every rule names an env file that exists, parses and pins every package."""
    import re

    import yaml

    rules, envs, derived = {}, set(), {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=[ ]*(?:use )?rule \w+)", smk.read_text())[1:]:
            use = re.match(r"\s*use rule (\w+) as (\w+) with:", block)
            if use:  # `use rule A as B with:` keeps A's env unless it names its own
                derived[use.group(2)] = use.group(1)
                continue
            name = re.search(r"rule (\w+):", block).group(1)
            conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            rules[name] = conda.group(1) if conda else None
    rules.update({new: rules[base] for new, base in derived.items()})
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
