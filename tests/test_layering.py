"""The package reads like the pipeline: a stage imports only from core and earlier stages."""

import ast
from pathlib import Path

import pytest

from support.imports import imported_names

PACKAGE = Path(__file__).resolve().parents[1] / "workflow_scripts" / "traitlens"
# the pipeline order (rules/*.smk); the demo generator comes first in the DAG but scores the
# workflow's outputs against its truth, so it sits last and may read every stage's files
STAGES = ("core", "ingest", "extract", "faces", "aus", "models", "evaluation", "interpret", "demo")


def imported_stages(source: str) -> set[str]:
    """The traitlens stages a module's source imports, at any depth (lazy imports too)."""
    found = set()
    for name in imported_names(ast.walk(ast.parse(source))):
        parts = name.split(".")
        if parts[0] == "traitlens" and len(parts) > 1:
            found.add(parts[1])
    return found


def layering_violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if len(rel.parts) == 1:
            if path.name != "__init__.py":
                problems.append(f"{rel}: module outside a stage package")
            continue
        stage = rel.parts[0]
        if stage not in STAGES:
            problems.append(f"{rel}: unknown stage {stage!r}")
            continue
        for other in imported_stages(path.read_text()):
            if other not in STAGES:
                problems.append(f"{rel}: imports traitlens.{other}, not a stage package")
            elif STAGES.index(other) > STAGES.index(stage):
                problems.append(f"{rel}: stage {stage} imports the later stage {other}")
    return problems


def test_every_module_sits_in_a_stage_and_imports_only_earlier_stages():
    assert layering_violations(PACKAGE) == []


def test_every_stage_package_exists():
    assert sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()) == sorted(
        STAGES
    )


@pytest.mark.parametrize(
    "source",
    [
        "from traitlens.interpret.cam import read_cam_file\n",
        "def f():\n    from traitlens.interpret import cam\n",
        "import traitlens.interpret.cam\n",
    ],
)
def test_a_backward_import_is_reported(tmp_path, source):
    # negative control: an extract module that reaches forward into interpret must be caught
    (tmp_path / "extract").mkdir()
    (tmp_path / "extract" / "__init__.py").write_text("")
    (tmp_path / "extract" / "bad.py").write_text(source)
    (tmp_path / "loose.py").write_text("")
    problems = layering_violations(tmp_path)
    assert "extract/bad.py: stage extract imports the later stage interpret" in problems
    assert "loose.py: module outside a stage package" in problems
