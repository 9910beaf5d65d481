"""Every rule's code imports in its conda env alone, and every env is pinned in full.

conda is not reachable here, so the envs are checked against the project's venv, which
has every package they pin at the same version (tests/support/conda_envs.py):

- the pins: each env's pip list is its roots (what its rules import) and everything they
  need, at the venv's versions, one version per package across the envs;
- the rules, read (unit): the packages, package look-ups and executables a rule's code
  reaches, lazy imports in the functions it calls included (tests/support/rule_imports.py),
  are pinned in its env;
- the rules, run (media): per env, one interpreter with only that env's packages on its
  path (no venv, and not the folder Snakemake's script preamble appends) imports every
  module the env's rules reach and runs every import statement of another package their
  code reaches, so a missing package fails here as it would in the conda env.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import re
import shutil
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from support.conda_envs import (
    ENVS,
    env_files,
    env_python,
    env_site,
    finish_import_check,
    parse_env,
    problems_of,
    requirement_pins,
    start_import_check,
    venv_python,
)
from support.rule_imports import SCRIPTS, RuleImports, rule_envs_and_scripts, rule_imports

RULES = rule_envs_and_scripts()
# The pins hold for the envs' Python: a venv on another Python resolves other packages.
needs_env_python = pytest.mark.skipif(
    {env_python(parse_env(p)) for p in env_files()} != {venv_python()},
    reason="the venv's Python is not the envs' python=: their pins are checked with a venv "
    "on the same Python",
)
# the executables each conda package puts on the env's PATH
CONDA_TOOLS = {"ffmpeg": {"ffmpeg", "ffprobe"}}


def env_of(rule: str) -> str:
    return RULES[rule][0].removesuffix(".yaml")


def reached(rule: str) -> RuleImports:
    return rule_imports(SCRIPTS / RULES[rule][1])


@functools.cache
def _top_level_owners() -> dict[str, list[str]]:
    return md.packages_distributions()  # reads every installed RECORD: once


def providers(top: str) -> set[str]:
    """The installed distributions that provide the top-level module ``top``."""
    return {canonicalize_name(d) for d in _top_level_owners().get(top, [])}


def unpinned(found: RuleImports, env: str) -> list[str]:
    """What ``found`` reaches that the env ``env`` does not pin (see the module doc)."""
    spec = parse_env(ENVS / f"{env}.yaml")
    tools = {t for p in spec.conda_packages() for t in CONDA_TOOLS.get(p.split("=")[0], ())}
    problems = []
    for record in sorted(found.third_party() | found.lookups, key=lambda r: r.where):
        have = providers(record.top)
        if not have & set(spec.pins):
            from_ = ", ".join(sorted(have)) or "no installed distribution"
            problems.append(f"{record.where}: {record.source} (from {from_})")
    for tool in sorted(found.tools, key=lambda t: t.where):
        if tool.top not in tools:
            problems.append(f"{tool.where}: {tool.source} (no conda package of the env has it)")
    return problems


# --- the pins -----------------------------------------------------------------------


@needs_env_python
@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_an_env_pins_its_roots_and_all_they_need_at_the_venvs_versions(path):
    """Fix: `.venv/bin/python tests/support/conda_envs.py --write` (after `bash setup.sh`
    rebuilt the venv from requirements.txt)."""
    assert problems_of(path, requirement_pins()) == []


def test_a_package_has_one_version_in_every_env():
    versions: dict[str, set[str]] = {}
    for path in env_files():
        for name, version in parse_env(path).pins.items():
            versions.setdefault(name, set()).add(version)
    assert {n: v for n, v in versions.items() if len(v) > 1} == {}
    faces, train = (parse_env(ENVS / f"{n}.yaml").pins for n in ("faces", "train"))
    assert faces["torch"] == train["torch"]  # py-feat's torch is the models' torch


def _edited(path: Path, tmp_path: Path, edit) -> Path:
    out = tmp_path / path.name
    out.write_text(edit(path.read_text()))
    return out


@needs_env_python
def test_the_pin_check_reports_drift_a_missing_and_a_stale_package(tmp_path):
    # negative controls on envs/train.yaml, each edit alone
    train, requirements = ENVS / "train.yaml", requirement_pins()
    assert problems_of(train, requirements) == []
    torch = f"torch=={requirements['torch']}"
    other_torch = _edited(train, tmp_path, lambda t: t.replace(torch, "torch==2.9.0"))
    assert f"train: torch==2.9.0, requirements.txt pins {requirements['torch']}" in problems_of(
        other_torch, requirements
    )
    # pillow leaves: matplotlib needs it
    no_pillow = _edited(train, tmp_path, lambda t: re.sub(r"\n *- pillow==\S+", "", t))
    found = problems_of(no_pillow, requirements)
    assert any(p.startswith("train: matplotlib needs pillow") for p in found), found
    # a package nothing on the env needs (here: the CLI's own PyYAML)
    stale = _edited(train, tmp_path, lambda t: t + f"      - pyyaml=={md.version('pyyaml')}\n")
    assert problems_of(stale, requirements) == [
        "train: pyyaml is pinned but nothing on the env needs it"
    ]
    # requirements.txt moved on, the venv and the env did not
    moved = {**requirements, "numpy": "0.1"}
    numpy = requirements["numpy"]
    assert f"train: numpy=={numpy}, requirements.txt pins 0.1" in problems_of(train, moved)


# --- the rules, read -----------------------------------------------------------------


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_rules_code_reaches_only_what_its_env_pins(rule):
    found = reached(rule)
    assert any(m.endswith(".rules") for m in found.modules), found.modules  # the walk ran
    assert unpinned(found, env_of(rule)) == []


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.name)
def test_an_envs_roots_are_what_its_rules_import(path):
    """A root no rule imports any more is dropped from the env (and its closure with it)."""
    env, tops = parse_env(path), set()
    for rule, (env_file, _) in RULES.items():
        if env_file == path.name:
            found = reached(rule)
            tops |= {i.top for i in found.third_party() | found.lookups}
    imported = {d for top in tops for d in providers(top)}
    assert [r for r in env.roots if r not in imported] == []


def test_the_walk_follows_the_functions_a_rule_calls_and_no_others(tmp_path):
    # find_detectors reads the face template, whose mask building lazily imports OpenCV
    # and mediapipe: the walk reaches the module but not those functions
    found = reached("find_detectors")
    assert "traitlens.faces.face_template" in found.modules
    assert not {"cv2", "mediapipe"} & {i.top for i in found.imports}
    # negative control: an entry script that builds the masks on the analysis env
    script = tmp_path / "masks_on_analysis.py"
    script.write_text(
        "from traitlens.core.errors import run_rule\n"
        "from traitlens.faces import face_template\n\n"
        "run_rule(lambda job: face_template.region_masks(job.landmarks, 64), snakemake)\n"
    )
    problems = unpinned(rule_imports(script), "analysis")
    assert any("import cv2" in p and "opencv-contrib-python" in p for p in problems), problems
    assert any("mediapipe" in p for p in problems), problems
    # and the rule that runs ffmpeg, moved to an env without it
    assert unpinned(reached("extract_shard"), "core") != []
    assert any("tool_path('ffprobe')" in p for p in unpinned(reached("extract_shard"), "core"))


# --- the rules, run ------------------------------------------------------------------


def plan(rules, root: Path = SCRIPTS) -> dict:
    """What the import check runs for ``rules`` (their entry scripts in ``root``): the
    modules their code reaches, the import statements of other packages in it, and the
    package look-ups."""
    modules, imports, lookups = set(), set(), set()
    for rule in rules:
        found = rule_imports(root / RULES[rule][1], root)
        modules |= found.modules
        imports |= {(i.where, i.source) for i in found.imports}
        lookups |= {(i.where, i.top) for i in found.lookups}
    return {"modules": sorted(modules), "imports": sorted(imports), "lookups": sorted(lookups)}


@pytest.fixture(scope="module")
def env_imports(tmp_path_factory) -> dict[str, dict]:
    """{env: import check result} for every env and its rules, the envs side by side."""
    started = {}
    for path in env_files():
        env = parse_env(path)
        site = env_site(env.pins, tmp_path_factory.mktemp(f"site_{env.name}"))
        rules = [r for r, (env_file, _) in RULES.items() if env_file == path.name]
        started[env.name] = start_import_check(site, SCRIPTS, plan(rules))
    return {name: finish_import_check(proc) for name, proc in started.items()}


@needs_env_python
@pytest.mark.media
@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_rules_code_imports_in_its_env_alone(rule, env_imports):
    found, result = reached(rule), env_imports[env_of(rule)]
    where = found.modules | {i.where for i in found.imports | found.lookups}
    assert [f for f in result["failed"] if f[0] in where] == []
    assert result["outside"] == []  # every module came from the env, traitlens or stdlib


def with_opencv_at_load(tmp_path: Path) -> Path:
    """A copy of workflow_scripts/ whose face template imports OpenCV at load time again,
    as it once did (and find_detectors, on the analysis env, with it)."""
    root = tmp_path / "workflow_scripts"
    shutil.copytree(SCRIPTS, root, ignore=shutil.ignore_patterns("__pycache__"))
    module = root / "traitlens" / "faces" / "face_template.py"
    text = module.read_text()
    module.write_text(text.replace("import h5py\n", "import cv2\nimport h5py\n", 1))
    return root


def test_the_read_check_catches_opencv_imported_at_load_time(tmp_path):
    root = with_opencv_at_load(tmp_path)
    found = rule_imports(root / RULES["find_detectors"][1], root)
    problems = unpinned(found, "analysis")
    assert len(problems) == 1 and "traitlens.faces.face_template:" in problems[0], problems
    assert "import cv2 (from opencv-contrib-python)" in problems[0]


@needs_env_python
@pytest.mark.media
def test_the_import_check_fails_code_whose_env_lacks_a_package(tmp_path):
    analysis = parse_env(ENVS / "analysis.yaml").pins
    site = env_site(analysis, tmp_path / "site")
    root = with_opencv_at_load(tmp_path)
    checks = {"cv2": start_import_check(site, root, plan(["find_detectors"], root))}
    # an env missing a package that one of its packages needs: matplotlib without Pillow
    no_pillow = env_site(set(analysis) - {"pillow"}, tmp_path / "no_pillow")
    checks["PIL"] = start_import_check(no_pillow, SCRIPTS, plan(["find_detectors"]))
    # a .pth file that puts the venv's own site-packages on the path: numpy then loads
    # from there, not from the env
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "venv.pth").write_text(md.distribution("numpy").locate_file("").as_posix())
    only_numpy = {"modules": [], "imports": [["x", "import numpy"]], "lookups": []}
    checks["leak"] = start_import_check(leaky, SCRIPTS, only_numpy)
    results = {name: finish_import_check(proc) for name, proc in checks.items()}

    failed = results["cv2"]["failed"]
    assert ["traitlens.faces.face_template", "import traitlens.faces.face_template",
            "ModuleNotFoundError: No module named 'cv2'"] in failed, failed  # fmt: skip
    errors = {error for _, _, error in results["PIL"]["failed"]}
    assert "ModuleNotFoundError: No module named 'PIL'" in errors, results["PIL"]
    assert results["leak"]["failed"] == []
    assert any(line.startswith("numpy: ") for line in results["leak"]["outside"])
    assert results["cv2"]["outside"] == results["PIL"]["outside"] == []
