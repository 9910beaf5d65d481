"""The docs stay honest: the paths and modules they name exist, the method sections the
code cites exist, and nothing cites a file outside the repository."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOT = ROOT / "workflow_scripts"
DOC_FILES = ("README.md", "bench/README.md", "docs/*.md")
METHOD = ROOT / "docs" / "method.md"

PATH_PREFIXES = (
    "rules/", "workflow_scripts/", "docs/", "bench/", "config/", "schemas/", "envs/",
    "profiles/", "tests/", "report/",
)  # fmt: skip
PATH_SUFFIXES = (".py", ".smk", ".yaml", ".md")
NOT_REPO = ("results/", "resources/")  # what a run writes
EXAMPLE_FILES = {"my_data.yaml"}  # a user's own file, named in the README's commands
# written out in pieces so that this file does not cite them itself
OUTSIDE_CITATIONS = ("../" + "shared/", "METHOD" + ".md", "DESIGN" + ".md")
TEXT_SUFFIXES = {
    ".py", ".smk", ".md", ".rst", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".sh", ".json",
    ".tsv", ".ini", "",
}  # fmt: skip

_BACKTICKED = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_MODULE = re.compile(r"\btraitlens\.[a-z_]+(?:\.[a-z_0-9]+)*")
_CITATION = re.compile(r"docs/method\.md §(\d+(?:\s*(?:,|and|-)\s*\d+)*)")
_SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def doc_paths() -> list[Path]:
    return sorted({p for pattern in DOC_FILES for p in ROOT.glob(pattern)})


def looks_like_repo_path(token: str) -> bool:
    """A backticked token that names a file or folder of the repository (not a pattern,
    a command line or a path under results/)."""
    if any(c in token for c in " <>{}*$[]=|,") or token.startswith(("/", "~", "-", ".")):
        return False
    if token.startswith(NOT_REPO) or token in EXAMPLE_FILES:
        return False
    return token.startswith(PATH_PREFIXES) or token.endswith(PATH_SUFFIXES)


def missing_paths(text: str, base: Path, root: Path = ROOT) -> list[str]:
    """Repository paths written in a Markdown text (backticked paths from the root,
    relative links from the text's folder ``base``) that do not exist."""
    missing = []
    for token in _BACKTICKED.findall(text):
        token = token.split("::")[0]
        if looks_like_repo_path(token) and not (root / token).exists():
            missing.append(token)
    for target in _LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (base / target).exists():
            missing.append(target)
    return missing


def missing_modules(text: str, package_root: Path = PACKAGE_ROOT) -> list[str]:
    """Dotted names ``traitlens.<stage>[.<module>[.<attribute>]]`` whose stage package or
    module file does not exist. A name may go on to one attribute (a function or class) of
    its module; the stage packages export nothing, so the name after a stage must be a
    module."""
    missing = []
    for name in sorted(set(_MODULE.findall(text))):
        parts = name.split(".")
        if len(parts) < 2:
            continue
        found = 0
        for i in range(len(parts), 1, -1):
            path = package_root.joinpath(*parts[:i])
            if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
                found = i
                break
        if found == 0 or (found == 2 and len(parts) > 2) or len(parts) - found > 1:
            missing.append(name)
    return missing


def module_rows(text: str) -> dict[str, str]:
    """The rows of architecture.md's module table: stage -> the row's text."""
    section = text.split("### Modules", 1)[-1].split("\n## ", 1)[0]
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| ([a-z]+) \| (.*)\|$", section, re.MULTILINE)
        if m.group(1) != "stage"
    }


def module_table_problems(rows: dict[str, str], package: Path) -> list[str]:
    """Modules of a stage package that its row does not name, owners (in bold) that are
    not modules of the stage, and stages without a row."""
    problems = []
    for stage_dir in sorted(p.parent for p in package.glob("*/__init__.py")):
        stage = stage_dir.name
        if stage not in rows:
            problems.append(f"{stage}: no row")
            continue
        named = set(re.findall(r"`([a-z_0-9]+)`", rows[stage]))
        for module in sorted(stage_dir.glob("*.py")):
            if module.stem != "__init__" and module.stem not in named:
                problems.append(f"{stage}.{module.stem}: not in the table")
        for owner in re.findall(r"\*\*`([a-z_0-9]+)`\*\*", rows[stage]):
            if not (stage_dir / f"{owner}.py").is_file():
                problems.append(f"{stage}.{owner}: no such module")
    return problems


def cited_sections(text: str) -> set[int]:
    """Section numbers cited as ``docs/method.md §N`` (also ``§1, 3, 5``)."""
    sections = set()
    for group in _CITATION.findall(text):
        sections.update(int(n) for n in re.findall(r"\d+", group))
    return sections


def method_sections(text: str) -> set[int]:
    return {int(n) for n in _SECTION.findall(text)}


def outside_citations(text: str) -> list[str]:
    return [c for c in OUTSIDE_CITATIONS if c in text]


def ignored_names(root: Path = ROOT) -> set[str]:
    """Folder and file names .gitignore leaves out (its plain-name patterns), plus .git:
    the tree is walked in Python (no git subprocess in a unit test)."""
    names = {".git"}
    gitignore = root / ".gitignore"
    lines = gitignore.read_text().splitlines() if gitignore.is_file() else []
    for line in lines:
        name = line.strip().strip("/")
        if name and not name.startswith("#") and not any(c in name for c in "*?[/!"):
            names.add(name)
    return names


def repository_text_files(root: Path = ROOT) -> list[Path]:
    """The repository's text files: tracked ones and new ones git does not ignore."""
    skip = ignored_names(root)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        found += [Path(folder) / f for f in files if f not in skip]
    return sorted(p for p in found if p.suffix in TEXT_SUFFIXES)


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


# ---- the repository ------------------------------------------------------------------


@pytest.mark.parametrize("doc", doc_paths(), ids=lambda p: str(p.relative_to(ROOT)))
def test_paths_written_in_the_docs_exist(doc):
    assert missing_paths(read_text(doc), doc.parent) == []


@pytest.mark.parametrize("doc", doc_paths(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_named_in_the_docs_exist(doc):
    assert missing_modules(read_text(doc)) == []


def test_architecture_names_every_module_of_every_stage():
    rows = module_rows(read_text(ROOT / "docs" / "architecture.md"))
    assert module_table_problems(rows, PACKAGE_ROOT / "traitlens") == []


def test_the_docs_are_there():
    names = {str(p.relative_to(ROOT)) for p in doc_paths()}
    assert {"README.md", "docs/method.md", "docs/architecture.md"} <= names


def test_nothing_cites_files_outside_the_repository():
    found = {
        str(path.relative_to(ROOT)): hits
        for path in repository_text_files()
        if (hits := outside_citations(read_text(path)))
    }
    assert found == {}


def test_method_has_the_five_numbered_sections():
    assert method_sections(read_text(METHOD)) == {1, 2, 3, 4, 5}


def test_every_method_citation_names_an_existing_section():
    sections = method_sections(read_text(METHOD))
    bad = {}
    for path in repository_text_files():
        cited = cited_sections(read_text(path))
        if cited - sections:
            bad[str(path.relative_to(ROOT))] = sorted(cited - sections)
    assert bad == {}


def test_the_code_cites_the_method():
    """The citation check sees the citations (it would pass vacuously on none)."""
    cited = set()
    for path in repository_text_files():
        if path.suffix in {".py", ".smk", ".rst"}:
            cited |= cited_sections(read_text(path))
    assert cited >= {1, 2, 4, 5}


def test_readme_keeps_the_two_commands_first():
    text = read_text(ROOT / "README.md")
    first_block = re.search(r"```[a-z]*\n(.*?)```", text, re.DOTALL).group(1)
    assert first_block.splitlines() == ["bash setup.sh demo", "bash setup.sh test"]


def test_readme_reaches_running_on_your_videos_within_a_screen():
    lines = read_text(ROOT / "README.md").splitlines()
    end_of_commands = [i for i, line in enumerate(lines) if line.startswith("```")][1]
    heading = next(i for i, line in enumerate(lines) if line.startswith("## Running it on"))
    assert heading - end_of_commands <= 40


# ---- negative controls: the checkers report what is wrong ------------------------------


def test_a_made_up_path_is_reported(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "real.smk").write_text("")
    text = "See `rules/real.smk`, `rules/made_up.smk`, `workflow_scripts/nowhere.py`."
    assert missing_paths(text, tmp_path, root=tmp_path) == [
        "rules/made_up.smk",
        "workflow_scripts/nowhere.py",
    ]


def test_a_made_up_link_is_reported(tmp_path):
    (tmp_path / "method.md").write_text("")
    text = "[method](method.md), [gone](gone.md), [web](https://example.org/x.md)"
    assert missing_paths(text, tmp_path, root=tmp_path) == ["gone.md"]


def test_patterns_and_commands_are_not_taken_for_paths():
    not_paths = (
        "results/<name>/manifest.tsv", "envs/*.yaml", "--configfile x.yaml",
        "frames/<shard>.h5", "models.img", "results/demo/tables/accuracy.md",
    )  # fmt: skip
    for token in not_paths:
        assert not looks_like_repo_path(token), token
    for token in ("rules/train.smk", "config.yaml", "docs/method.md"):
        assert looks_like_repo_path(token), token


def test_a_made_up_module_is_reported(tmp_path):
    stage = tmp_path / "traitlens" / "faces"
    stage.mkdir(parents=True)
    (tmp_path / "traitlens" / "__init__.py").write_text("")
    (stage / "__init__.py").write_text("")
    (stage / "alignment.py").write_text("")
    text = (
        "traitlens.faces.alignment, traitlens.faces.alignment.align_face, "
        "traitlens.faces.made_up, traitlens.faces.made_up.fn, traitlens.nostage.x"
    )
    assert missing_modules(text, package_root=tmp_path) == [
        "traitlens.faces.made_up",
        "traitlens.faces.made_up.fn",
        "traitlens.nostage.x",
    ]


def test_a_module_left_out_or_made_up_is_reported(tmp_path):
    for stage, modules in {"core": ["atomic", "tables"], "faces": ["faces_file"]}.items():
        (tmp_path / stage).mkdir()
        for name in ["__init__", *modules]:
            (tmp_path / stage / f"{name}.py").write_text("")
    table = (
        "### Modules\n\n| stage | modules |\n|---|---|\n"
        "| core | `atomic` (writes), `UserError` |\n"
        "| faces | **`faces_file`**, **`made_up_file`** |\n\n## Next\n| ingest | x |\n"
    )
    rows = module_rows(table)
    assert sorted(rows) == ["core", "faces"]
    assert module_table_problems(rows, tmp_path) == [
        "core.tables: not in the table",
        "faces.made_up_file: no such module",
    ]
    assert module_table_problems({"core": rows["core"]}, tmp_path)[-1] == "faces: no row"


def test_a_made_up_section_is_reported():
    method = "# The method\n## The data\n## 1. Images\n## 2. CAM\ntext\n## 5. AUs\n"
    sections = method_sections(method)
    assert sections == {1, 2, 5}
    # the made-up section written in pieces, so that this file does not cite it itself
    code = "# (docs/method.md §" + "9)\n# docs/method.md §1, 2, 5\n# docs/method.md §2's measure"
    assert cited_sections(code) == {1, 2, 5, 9}
    assert cited_sections(code) - sections == {9}


def test_ignored_folders_are_not_searched(tmp_path):
    (tmp_path / ".gitignore").write_text(".venv/\n/results/\n*.pyc\n")
    for rel in ("docs/a.md", ".venv/lib/x.py", "results/demo/t.tsv", ".git/config", "b.pyc"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert [p.relative_to(tmp_path).as_posix() for p in repository_text_files(tmp_path)] == [
        ".gitignore",
        "docs/a.md",
    ]


def test_a_citation_outside_the_repository_is_reported():
    text = "see ../" + "shared/" + "METHOD" + ".md, and " + "DESIGN" + ".md"
    assert outside_citations(text) == list(OUTSIDE_CITATIONS)
    assert outside_citations("see docs/method.md §2") == []
