"""What a rule's code imports, read from the syntax tree function by function.

From a rule's entry script (``workflow_scripts/<rule>.py``) the walk follows every name
the code it reaches refers to: the module-level code of each traitlens module imported on
the way, and the body of each traitlens function or class named (a class with all its
methods). Imports inside a reached function count (a lazy import runs when the function
does); imports inside functions the rule never names do not, so a module may keep a lazy
import of a package that only some of its callers' envs hold. Calls through names the
code builds at run time (``getattr``, strings) are not followed; nothing in the package
dispatches that way.

What comes out, per rule:

- ``modules``: the traitlens modules imported on the way;
- ``imports``: every import statement of another package the reached code runs, with
  where it sits (a third-party or standard-library one);
- ``lookups``: ``importlib.util.find_spec("<name>")`` calls with a literal name (the code
  reads a package's data files without importing it);
- ``tools``: the executables it looks up on PATH (``shutil.which("ffmpeg")``, and the
  package's ``tool_path("ffprobe")``).
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from support.imports import imported_names

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "workflow_scripts"
PACKAGE_NAME = "traitlens"


def rule_envs_and_scripts(rules_dir: Path = REPO / "rules") -> dict[str, tuple[str, str]]:
    """{rule: (conda env file name, entry script name)} from rules/*.smk. A ``use rule``
    copy runs its base rule's script in its base rule's env, so it is not listed."""
    out = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        rule, env, expect = None, None, None
        for line in smk.read_text().splitlines():
            stripped = line.strip()
            if m := re.match(r"rule (\w+):", stripped):
                rule, env = m.group(1), None
            elif stripped in ("conda:", "script:"):
                expect = stripped
            elif expect and stripped.startswith('"'):
                value = Path(stripped.strip('"')).name
                if expect == "conda:":
                    env = value
                else:
                    out[rule] = (env, value)
                expect = None
    return out


def module_file(name: str, root: Path = SCRIPTS) -> Path | None:
    """The source file of the traitlens module ``name``, or None when it is no module."""
    path = root.joinpath(*name.split("."))
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    return None


def runtime_nodes(nodes, top_level_only: bool):
    """The nodes under ``nodes``, leaving out ``if TYPE_CHECKING:`` blocks and, with
    ``top_level_only``, function bodies (their imports run only when called; decorators
    and default values run at definition, so they stay)."""
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo += node.orelse
            continue
        if top_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            todo += node.decorator_list + node.args.defaults
            todo += [d for d in node.args.kw_defaults if d is not None]
            continue
        yield node
        todo += list(ast.iter_child_nodes(node))


@dataclass(frozen=True)
class Import:
    """One import statement of another package, as written, and where it sits."""

    top: str  # the top-level module it imports: cv2 for ``from cv2 import dnn``
    source: str  # the statement, runnable on its own
    where: str  # module:line


@dataclass
class RuleImports:
    modules: set[str] = field(default_factory=set)
    imports: set[Import] = field(default_factory=set)
    lookups: set[Import] = field(default_factory=set)
    tools: set[Import] = field(default_factory=set)

    def third_party(self) -> set[Import]:
        """The imports of packages outside the standard library."""
        return {i for i in self.imports if i.top not in sys.stdlib_module_names}


class _Module:
    """A parsed module: its top-level definitions and what its global names are bound to."""

    def __init__(self, name: str, path: Path, root: Path):
        self.name, self.path = name, path
        self.tree = ast.parse(path.read_text())
        self.defs = {
            n.name: n
            for n in self.tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        self.bindings = _bindings(runtime_nodes(self.tree.body, True), root)


@functools.cache
def _parsed(name: str, path: Path, root: Path, mtime_ns: int) -> _Module:
    """The module ``name`` at ``path``, parsed once per version of the file."""
    return _Module(name, path, root)


def _bindings(nodes, root: Path) -> dict[str, tuple[str, str | None]]:
    """{local name: (traitlens module, member or None for the module itself)} that the
    import statements among ``nodes`` bind."""
    out = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != PACKAGE_NAME:
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                target = (sub, None) if module_file(sub, root) else (node.module, alias.name)
                out[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != PACKAGE_NAME:
                    continue
                if alias.asname:
                    out[alias.asname] = (alias.name, None)
                else:  # import traitlens.a.b binds traitlens; attribute chains resolve it
                    out[PACKAGE_NAME] = (PACKAGE_NAME, None)
    return out


class _Walk:
    def __init__(self, root: Path):
        self.root = root
        self.parsed: dict[str, _Module] = {}
        self.done: set[tuple[str, str | None]] = set()
        self.todo: list[tuple[str, str | None]] = []
        self.found = RuleImports()

    def module(self, name: str) -> _Module:
        if name not in self.parsed:
            path = module_file(name, self.root)
            self.parsed[name] = _parsed(name, path, self.root, path.stat().st_mtime_ns)
        return self.parsed[name]

    def reach(self, module: str, member: str | None = None) -> None:
        """Queue a module's top-level code (member None) or one of its definitions."""
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c
            self.todo.append((".".join(parts[:i]), None))
        if member is not None:
            self.todo.append((module, member))

    def run(self) -> RuleImports:
        while self.todo:
            unit = self.todo.pop()
            if unit in self.done:
                continue
            self.done.add(unit)
            name, member = unit
            mod = self.module(name)
            if member is None:
                self.found.modules.add(name)
                self.visit(mod, list(runtime_nodes(mod.tree.body, True)), mod.bindings)
            elif member in mod.defs:
                node = mod.defs[member]
                nodes = list(runtime_nodes([node], False))
                self.visit(mod, nodes, {**mod.bindings, **_bindings(nodes, self.root)})
            elif member in mod.bindings:  # a name the module imported: follow it
                self.reach(*mod.bindings[member])
            elif module_file(f"{name}.{member}", self.root):
                self.reach(f"{name}.{member}")
        return self.found

    def visit(self, mod: _Module, nodes: list[ast.AST], bindings) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                self.record_import(mod, node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                if node.id in bindings:
                    self.reach(*bindings[node.id])
                elif node.id in mod.defs:
                    self.todo.append((mod.name, node.id))
            elif isinstance(node, ast.Attribute):
                self.follow_attribute(node, bindings)
            elif isinstance(node, ast.Call) and (kind := _lookup_kind(node)):
                record = Import(node.args[0].value, ast.unparse(node), f"{mod.name}:{node.lineno}")
                getattr(self.found, kind).add(record)

    def record_import(self, mod: _Module, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.ImportFrom) and (node.level or node.module == "__future__"):
            return
        for name in imported_names([node]):
            top = name.split(".")[0]
            if top == PACKAGE_NAME:
                # from traitlens.a import f runs traitlens.a; f counts where it is used
                if module_file(name, self.root):
                    self.reach(name)
            else:
                where = f"{mod.name}:{node.lineno}"
                self.found.imports.add(Import(top, ast.unparse(node), where))

    def follow_attribute(self, node: ast.Attribute, bindings) -> None:
        """``alias.f`` or ``traitlens.a.b.f`` where the alias names a traitlens module."""
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in bindings:
            return
        module, member = bindings[node.id]
        if member is not None:
            return
        for attr in reversed(chain):
            if module_file(f"{module}.{attr}", self.root):
                module = f"{module}.{attr}"
                continue
            self.reach(module, attr)
            return


def _lookup_kind(node: ast.Call) -> str | None:
    """'lookups' for find_spec("x"), 'tools' for which("x") or tool_path("x"), else None."""
    if len(node.args) != 1 or not isinstance(node.args[0], ast.Constant):
        return None
    if not isinstance(node.args[0].value, str):
        return None
    func = ast.unparse(node.func).split(".")[-1]
    return {"find_spec": "lookups", "which": "tools", "tool_path": "tools"}.get(func)


def rule_imports(script: Path, root: Path = SCRIPTS) -> RuleImports:
    """What the entry script ``script`` reaches (see the module doc)."""
    walk = _Walk(root)
    name = f"__entry__.{script.stem}"
    walk.parsed[name] = _Module(name, script, root)
    walk.todo.append((name, None))
    found = walk.run()
    found.modules.discard(name)
    return found
