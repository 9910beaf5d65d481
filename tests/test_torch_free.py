"""The rules on envs/analysis.yaml run without PyTorch, and the file-format owners need
only numpy and h5py.

Checked in-process (no subprocess): every traitlens module a rule reaches is imported
with ``sys.modules["torch"] = None``, which makes ``import torch`` raise ImportError. The
modules a rule reaches: those its entry script imports, those the rule's function in
``traitlens.<stage>.rules`` imports (lazily, inside it), and from there every module any
of those imports, at module level or lazily inside any of its functions (outside ``if
TYPE_CHECKING:``): more than a rule may use, so a pass is safe. Only the stages' rules
modules are read function by function, since they hold every rule of their stage.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from support.imports import imported_names
from support.rule_imports import module_file, rule_envs_and_scripts, runtime_nodes

try:  # the comparison with torch's upsampling needs it
    import torch
except ImportError:
    torch = None

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow_scripts"
PACKAGE = SCRIPTS / "traitlens"
TORCH_FREE_ENV = "analysis.yaml"
# the modules that own an intermediate format of the interpretability stage
FORMAT_OWNERS = ("interpret.dump_file", "interpret.cam_file", "interpret.frame_refs")
# what envs/analysis.yaml leaves out: its rules' modules must import without them
MISSING_FROM_ENV = ("torch", "torchvision", "cv2", "mediapipe", "feat")
BLOCKED = ("traitlens", *MISSING_FROM_ENV)


def _imported(nodes) -> set[str]:
    """traitlens modules that import statements among ``nodes`` name (``from a.b import
    c`` names a.b, and a.b.c when that is a module)."""
    return {n for n in imported_names(nodes) if n.startswith("traitlens.") and module_file(n)}


def reachable_modules(script: Path, rule: str) -> set[str]:
    """The traitlens modules the rule's entry script reaches (see the module doc)."""
    todo = _imported(runtime_nodes(ast.parse(script.read_text()).body, True))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse(module_file(name).read_text())
        if not name.endswith(".rules"):
            todo |= _imported(runtime_nodes(tree.body, False))
            continue
        todo |= _imported(runtime_nodes(tree.body, True))
        # the rule's own function, its lazy imports included
        mine = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == rule]
        todo |= _imported(runtime_nodes(mine, False))
    return seen


def import_without_torch(modules) -> None:
    """Import ``modules`` afresh with torch, OpenCV, mediapipe and py-feat made unimportable
    (envs/analysis.yaml has none of them); sys.modules is restored."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in BLOCKED}
    for name in saved:
        del sys.modules[name]
    for name in MISSING_FROM_ENV:
        sys.modules[name] = None  # import torch -> ImportError
    try:
        for name in sorted(modules):
            importlib.import_module(name)
    finally:
        for name in [k for k in sys.modules if k.split(".")[0] in BLOCKED]:
            del sys.modules[name]
        sys.modules.update(saved)


TORCH_FREE_RULES = sorted(
    rule for rule, (env, _) in rule_envs_and_scripts().items() if env == TORCH_FREE_ENV
)


def test_the_analysis_env_has_the_analysis_rules_and_no_torch():
    assert {
        "plot_cam",
        "cam_face_overlap",
        "plot_unit_segmentation",
        "find_detectors",
        "find_au_detectors",
        "validate_planted",
    } <= set(TORCH_FREE_RULES)
    env = (REPO / "envs" / TORCH_FREE_ENV).read_text()
    assert "torch" not in re.sub(r"#.*", "", env)


@pytest.mark.parametrize("rule", TORCH_FREE_RULES)
def test_a_rule_on_the_analysis_env_imports_without_torch(rule):
    _, script = rule_envs_and_scripts()[rule]
    modules = reachable_modules(SCRIPTS / script, rule)
    assert any(m.endswith(".rules") for m in modules), modules  # the walk found the rule
    import_without_torch(modules)


def test_a_module_that_needs_torch_is_caught():
    # negative controls: the model itself, and a rule whose montages read pixels through
    # the training data code (reached only through a lazy import)
    with pytest.raises(ImportError):
        import_without_torch(["traitlens.models.dan"])
    modules = reachable_modules(SCRIPTS / "dump_activations.py", "dump_activations")
    assert "traitlens.interpret.activation_dump" in modules
    with pytest.raises(ImportError):
        import_without_torch(modules)
    assert "torch" not in sys.modules or sys.modules["torch"] is not None  # restored


def module_level_imports(path: Path) -> set[str]:
    """Top-level names of the modules ``path`` imports at module level (traitlens ones as
    'traitlens.<stage>'), outside ``if TYPE_CHECKING:`` blocks."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(".".join(parts[:2]) if parts[0] == "traitlens" else parts[0])
    return found


def allowed_owner_imports(names: set[str]) -> set[str]:
    """Those of ``names`` an owner module must not import at module level."""
    allowed = {"numpy", "h5py", "traitlens.core"} | set(sys.stdlib_module_names)
    return {n for n in names if n not in allowed}


@pytest.mark.parametrize("owner", FORMAT_OWNERS)
def test_a_format_owner_imports_only_numpy_h5py_and_core(owner):
    path = PACKAGE.joinpath(*owner.split(".")).with_suffix(".py")
    assert allowed_owner_imports(module_level_imports(path)) == set()


def test_the_owner_import_check_reports_a_heavy_import():
    # negative control: the CAM computation imports torch and the models stage
    found = allowed_owner_imports(module_level_imports(PACKAGE / "interpret" / "cam.py"))
    assert {"torch", "traitlens.models", "pandas"} <= found


@pytest.mark.media  # torch's first CPU op runs lscpu in a subprocess
# the stored frame sizes of the demo (216 x 384) and First Impressions (360 x 640) configs;
# for small outputs torch takes another code path whose rounding can differ by one ulp
@pytest.mark.parametrize(
    "hw", [(2, 2, 216, 384), (6, 6, 216, 384), (7, 5, 360, 640), (3, 4, 360, 640)]
)
def test_numpy_upsampling_matches_torch_bit_for_bit(hw):
    """The face-overlap tables kept their bytes when the upsampling left torch."""
    if torch is None:
        pytest.skip("torch is not installed")
    from traitlens.interpret.cam_face_overlap import _upsample

    h, w, height, width = hw
    maps = np.random.default_rng(h * w).gamma(1.0, 2.0, size=(4, 5, h, w)).astype(np.float32)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(maps), size=(height, width), mode="bilinear", align_corners=False
    ).numpy()
    np.testing.assert_array_equal(_upsample(maps, height, width), ref)
    # negative control: plain float32 arithmetic (no fused multiply-add) differs somewhere
    if (h, w) != (height, width):
        from traitlens.interpret.cam_face_overlap import _linear_weights

        y0, y1, a0, a1 = _linear_weights(h, height)
        x0, x1, b0, b1 = _linear_weights(w, width)
        t0 = maps[..., y0, :][..., x0] * b0 + maps[..., y0, :][..., x1] * b1
        t1 = maps[..., y1, :][..., x0] * b0 + maps[..., y1, :][..., x1] * b1
        plain = t0 * a0[:, None] + t1 * a1[:, None]
        assert not np.array_equal(plain, ref)
