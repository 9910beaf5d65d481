"""The conda envs (envs/*.yaml) against the project's pinned venv.

Each env takes Python (and ffmpeg where a rule runs it) from conda-forge and every Python
package from PyPI, under ``pip:``, pinned with ``==``. The pip list has two parts:

- the packages the env's rules import (its *roots*), at requirements.txt's versions, or
  the venv's for a root requirements.txt does not name;
- everything those need, found from the installed packages' metadata
  (``importlib.metadata``, markers evaluated for this platform and Python), at the
  versions installed in the venv (``.venv``, built from requirements.txt).

So every env installs the same versions as the venv the tests run in, and one package has
one version in every env (the same torch for faces and train). The roots are edited by
hand; the second part is generated. With the venv's interpreter, from the repository root:

    .venv/bin/python tests/support/conda_envs.py          # list the problems, exit 1 if any
    .venv/bin/python tests/support/conda_envs.py --write  # regenerate the pinned closures

``env_site`` lays out a site-packages folder that holds one env's packages alone
(symbolic links into the venv), in which tests/test_conda_envs.py imports each rule's
code: what a rule needs and its env lacks fails there as it would in the conda env.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "envs"
REQUIREMENTS = REPO / "requirements.txt"
ROOTS_HEADING = "# imported by the rules on this env (requirements.txt's versions)"
NEEDS_HEADING = "# what those need, at the versions of the project's .venv (generated:"
NEEDS_COMMAND = "# .venv/bin/python tests/support/conda_envs.py --write)"
PIN = re.compile(r"\s+- ([\w.-]+)==(\S+)\s*")


@dataclass
class Env:
    """One env file: the text before its pip list (kept as written), its roots and pins."""

    name: str
    head: str  # the file up to and including the "- pip:" line
    roots: list[str]  # canonical names, as listed
    pins: dict[str, str]  # canonical name -> version, roots and what they need

    def conda_packages(self) -> list[str]:
        return [d for d in yaml.safe_load(self.head)["dependencies"] if isinstance(d, str)]


def parse_env(path: Path) -> Env:
    """Read an env file written in the layout :func:`render` writes."""
    text = path.read_text()
    head, sep, tail = text.partition("  - pip:\n")
    if not sep:
        raise ValueError(f"{path}: no '  - pip:' list")
    roots, pins, in_roots = [], {}, True
    for line in tail.splitlines():
        if line.strip().startswith(NEEDS_HEADING):
            in_roots = False
        if m := PIN.fullmatch(line):
            name = canonicalize_name(m.group(1))
            pins[name] = m.group(2)
            if in_roots:
                roots.append(name)
    return Env(path.stem, head + sep, roots, pins)


def requirement_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{canonical name: version} of requirements.txt's ``name==version`` lines."""
    out = {}
    for line in path.read_text().splitlines():
        if m := re.fullmatch(r"([\w.-]+)==(\S+)", line.split("#")[0].strip()):
            out[canonicalize_name(m.group(1))] = m.group(2)
    return out


def installed_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def needed(name: str, extras: Iterable[str] = ()) -> list[Requirement]:
    """The requirements of the installed ``name`` (with ``extras``) that apply here."""
    out = []
    for spec in md.distribution(name).requires or []:
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *extras}):
            out.append(req)
    return out


def closure(roots: Iterable[str]) -> dict[str, str]:
    """{canonical name: venv version} of ``roots`` and everything they need, transitively.
    A package the venv lacks raises LookupError naming who needs it."""
    extras_seen: dict[str, set[str]] = {}
    todo = [(canonicalize_name(r), frozenset(), "the env's roots") for r in roots]
    while todo:
        name, extras, needed_by = todo.pop()
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        if installed_version(name) is None:
            raise LookupError(f"{name} (needed by {needed_by}) is not installed in the venv")
        extras_seen.setdefault(name, set()).update(extras)
        for req in needed(name, extras_seen[name]):
            todo.append((canonicalize_name(req.name), frozenset(req.extras), name))
    return {name: installed_version(name) for name in sorted(extras_seen)}


def render(env: Env, pins: dict[str, str]) -> str:
    """The env file with ``pins`` (roots and what they need) under its pip list."""
    lines = [env.head.rstrip("\n"), f"      {ROOTS_HEADING}"]
    lines += [f"      - {name}=={pins[name]}" for name in env.roots]
    lines += [f"      {NEEDS_HEADING}", f"      {NEEDS_COMMAND}"]
    lines += [f"      - {n}=={v}" for n, v in sorted(pins.items()) if n not in env.roots]
    return "\n".join(lines) + "\n"


def expected_pins(env: Env, requirements: dict[str, str]) -> dict[str, str]:
    """What the env's pip list should pin: the closure of its roots in the venv."""
    pins = closure(env.roots)
    return {n: requirements.get(n, v) if n in env.roots else v for n, v in pins.items()}


def drift(env: Env, requirements: dict[str, str]) -> list[str]:
    """How the env's pins differ from requirements.txt and from the venv."""
    problems = []
    for name, version in env.pins.items():
        want = requirements.get(name)
        if want is not None and version != want:
            problems.append(f"{env.name}: {name}=={version}, requirements.txt pins {want}")
        have = installed_version(name)
        if have is None:
            problems.append(f"{env.name}: {name}=={version} is not installed in the venv")
        elif version != have:
            problems.append(f"{env.name}: {name}=={version}, the venv has {have}")
    return problems


def unmet(env: Env) -> list[str]:
    """What a pinned package needs (per the venv's metadata of it) that the env lacks or
    pins at a version outside the requirement."""
    problems = []
    for name in env.pins:
        if installed_version(name) is None:
            continue  # drift() reports it
        for req in needed(name):
            dep = canonicalize_name(req.name)
            version = env.pins.get(dep)
            if version is None:
                problems.append(f"{env.name}: {name} needs {req}, which the env does not pin")
            elif not req.specifier.contains(version, prereleases=True):
                problems.append(f"{env.name}: {name} needs {req}, the env pins {dep}=={version}")
    return problems


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def env_python(env: Env) -> str:
    """The Python version the env pins from conda-forge (python=3.11 -> '3.11')."""
    return next(p.split("=")[1] for p in env.conda_packages() if p.startswith("python="))


def venv_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def problems_of(path: Path, requirements: dict[str, str]) -> list[str]:
    """Everything wrong with one env file (empty when it is what --write would make)."""
    env = parse_env(path)
    if env_python(env) != venv_python():  # markers, and so the closure, depend on it
        return [f"{env.name}: python={env_python(env)}, but the venv runs {venv_python()}"]
    found = drift(env, requirements) + unmet(env)
    try:
        expected = expected_pins(env, requirements)
    except LookupError as err:
        return [*found, f"{env.name}: {err}"]
    stale = sorted(set(env.pins) - set(expected))
    found += [f"{env.name}: {n} is pinned but nothing on the env needs it" for n in stale]
    if not found and path.read_text() != render(env, expected):
        found.append(f"{env.name}: not in the layout --write makes")
    return found


# --- an env's packages alone, for import checks --------------------------------------


@functools.cache
def _venv_files() -> dict[str, tuple[md.Distribution, tuple[PurePosixPath, ...]]]:
    """{canonical name: (installed distribution, its files inside site-packages)}, from
    the RECORD files (read as text: much faster than Distribution.files)."""
    out = {}
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        rows = csv.reader((dist.read_text("RECORD") or "").splitlines())
        files = tuple(PurePosixPath(row[0]) for row in rows if row and row[0])
        out.setdefault(name, (dist, tuple(f for f in files if f.parts[0] != "..")))
    return out


def env_site(names: Iterable[str], dest: Path) -> Path:
    """A site-packages folder ``dest`` with the venv's installations of ``names`` alone, as
    symbolic links: a whole top-level folder where one distribution owns it, else (a
    namespace folder several share, such as nvidia/) file by file."""
    installed = _venv_files()
    wanted = {canonicalize_name(n) for n in names}
    if missing := wanted - set(installed):
        raise LookupError(f"not installed in the venv: {', '.join(sorted(missing))}")
    owners: dict[str, set[str]] = {}
    for name, (_, files) in installed.items():
        for top in {f.parts[0] for f in files}:
            owners.setdefault(top, set()).add(name)
    dest.mkdir(parents=True, exist_ok=True)
    for name in sorted(wanted):
        dist, files = installed[name]
        for top in sorted({f.parts[0] for f in files}):
            if len(owners[top]) == 1:
                (dest / top).symlink_to(dist.locate_file(top))
                continue
            for file in files:
                if file.parts[0] == top and "__pycache__" not in file.parts:
                    link = dest / file
                    link.parent.mkdir(parents=True, exist_ok=True)
                    if not link.is_symlink():
                        link.symlink_to(dist.locate_file(file))
    return dest


# Run by the env's interpreter with -I -S (no site-packages of its own): the plan (a JSON
# file, the first argument) names the site folder, the folder that holds traitlens, the
# modules to import, the import statements to run and the packages to look up; it prints
# what failed, and any module loaded from outside those folders and the standard library.
IMPORT_CHECK = """
import importlib, importlib.util, json, os, site, sys, sysconfig
with open(sys.argv[1]) as f:
    plan = json.load(f)
site.addsitedir(plan["site"])
sys.path.insert(0, plan["scripts"])
failed = []
def attempt(where, what, action):
    try:
        action()
    except Exception as err:  # ImportError, or whatever a package missing a part raises
        failed.append([where, what, f"{type(err).__name__}: {err}"])
def look_up(name):
    if importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(f"no package {name!r} to look up")
for name in plan["modules"]:
    attempt(name, f"import {name}", lambda: importlib.import_module(name))
for where, source in plan["imports"]:
    attempt(where, source, lambda: exec(source, {}))
for where, name in plan["lookups"]:
    attempt(where, f"find_spec({name!r})", lambda: look_up(name))
paths = sysconfig.get_paths()
inside = (plan["site"], plan["scripts"])
stdlib = tuple(os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib"))
outside = sorted(
    f"{name}: {path}"
    for name, module in list(sys.modules.items())
    if (path := getattr(module, "__file__", None))
    and os.path.isabs(path)
    and not path.startswith(inside)
    and not os.path.realpath(path).startswith(stdlib)
)
print(json.dumps({"failed": failed, "outside": outside}))
"""


def start_import_check(site_dir: Path, scripts: Path, plan: dict) -> subprocess.Popen:
    """Start the venv's interpreter on ``site_dir`` alone (see IMPORT_CHECK); ``plan``
    holds "modules", "imports" ([where, statement]) and "lookups" ([where, name]), and is
    written next to ``site_dir``. :func:`finish_import_check` collects the result."""
    plan_file = site_dir.with_name(f"{site_dir.name}.plan.json")
    plan_file.write_text(json.dumps({"site": str(site_dir), "scripts": str(scripts), **plan}))
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", IMPORT_CHECK, str(plan_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def finish_import_check(proc: subprocess.Popen) -> dict:
    """{"failed": [[where, what, error]], "outside": ["module: file"]} of a started check."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the import check crashed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate the pinned closures")
    args = parser.parse_args(argv)
    requirements = requirement_pins()
    failed = False
    for path in env_files():
        env = parse_env(path)
        if args.write and env_python(env) == venv_python():
            try:
                path.write_text(render(env, expected_pins(env, requirements)))
            except LookupError as err:  # a root or what it needs is not installed
                print(f"{env.name}: not written: {err}", file=sys.stderr)
        for problem in problems_of(path, requirements):
            print(problem, file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
