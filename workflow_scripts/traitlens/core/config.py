"""Config sections -> dataclasses, after the schema has checked them.

``schemas/config.schema.yaml`` is the one check of the config: keys, types, bounds and
defaults. The workflow validates the config once at start with the defaults filled in
(rules/common.smk), so every section a rule hands on is complete and valid.
:func:`from_section` only builds a settings dataclass from such a section; it checks
nothing the schema checks. One behaviour for every settings class:

- keys that are fields of the class are taken; other keys are ignored (the schema has
  rejected unknown keys already, and one section may feed several classes: a model's
  settings feed both ``DanConfig`` and ``TrainConfig``);
- a field absent from the mapping takes the dataclass default, which tests keep equal to
  the schema default (tests/test_config_sections.py), so callers that skip the schema
  (tests, bench scripts, weights saved by older versions) get the same settings;
- a field with no default that is absent is a programming error (``TypeError``).

YAML has no tuples: a list given for a tuple-typed field becomes a tuple; an integer
given for a ``float`` field becomes a float (``2`` and ``2.0`` are the same setting).
Rules the schema cannot state (one value bounded by another) stay in the class's
``__post_init__`` and raise :class:`traitlens.core.errors.UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def _coerce(kind: Any, value: Any) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind.startswith("tuple") and isinstance(value, list):
        return tuple(value)
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_section(cls: type[T], values: Mapping | None, section: str) -> T:
    """An instance of dataclass ``cls`` from config section ``section`` (already validated)."""
    values = values or {}
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    taken = {f.name: _coerce(f.type, values[f.name]) for f in fields if f.name in values}
    missing = [
        f.name
        for f in fields
        if f.name not in taken
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise TypeError(
            f"config {section}: no value for {missing}; the section must come from the "
            "validated config (the schema fills every default)"
        )
    return cls(**taken)
