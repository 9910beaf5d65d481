"""Reading a module's imports from its syntax tree (for the layering and torch-free tests)."""

from __future__ import annotations

import ast
from collections.abc import Iterable


def imported_names(nodes: Iterable[ast.AST]) -> set[str]:
    """The dotted names the absolute import statements among ``nodes`` name: ``import a.b``
    names a.b; ``from a.b import c`` names a.b and a.b.c (c may be a module)."""
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found
