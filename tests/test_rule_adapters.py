"""Rules and entry scripts in one form (issue 15, part 4): rule ``R`` runs
``workflow_scripts/R.py``, and that script is the same short adapter that hands the job to
the function ``R`` of its stage (``traitlens.<stage>.rules``) through ``run_rule``."""

from __future__ import annotations

import ast
import importlib
import logging
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from traitlens.core.errors import UserError, run_rule
from traitlens.models.rules import loader_workers, run_config

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow_scripts"
STAGES = ("ingest", "extract", "faces", "aus", "models", "evaluation", "interpret", "demo")


def rule_scripts(rules_dir: Path) -> dict[str, tuple[str, str | None]]:
    """rule name -> (its .smk file's stem, the path its ``script:`` names, or None)."""
    found: dict[str, tuple[str, str | None]] = {}
    for smk in sorted(rules_dir.glob("*.smk")):
        current = None
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            rule = re.match(r"\s*rule\s+(\w+)\s*:", line)
            if rule:
                current = rule.group(1)
                assert current not in found, f"rule {current} defined twice"
                found[current] = (smk.stem, None)
            elif current and re.match(r"\s*script\s*:", line):
                rest = line.split(":", 1)[1].strip() or lines[i + 1].strip()
                found[current] = (smk.stem, rest.rstrip(",").strip("\"'"))
    return found


def adapter_problems(source: str, rule: str, smk: str) -> list[str]:
    """What keeps an entry script from being exactly the adapter of ``rule``:
    the docstring ``Rule <rule> (rules/<smk>.smk): ...``, ``from traitlens.core.errors import
    run_rule``, ``from traitlens.<stage>.rules import <rule>`` and ``run_rule(<rule>,
    snakemake)``, nothing else."""
    body = ast.parse(source).body
    problems = []
    if len(body) != 4:
        problems.append(f"{len(body)} statements; the adapter has 4")
    doc = ast.get_docstring(ast.Module(body=body[:1], type_ignores=[])) if body else None
    if not doc or not doc.startswith(f"Rule {rule} (rules/{smk}.smk): "):
        problems.append(f"docstring must start 'Rule {rule} (rules/{smk}.smk): '")
    imports = [n for n in body[1:3] if isinstance(n, ast.ImportFrom)]
    modules = {n.module: [(a.name, a.asname) for a in n.names] for n in imports}
    if modules.get("traitlens.core.errors") != [("run_rule", None)]:
        problems.append("must import exactly run_rule from traitlens.core.errors")
    stage_imports = {m: names for m, names in modules.items() if m != "traitlens.core.errors"}
    if len(stage_imports) != 1:
        problems.append("must import the rule function from one traitlens.<stage>.rules")
    for module, names in stage_imports.items():
        if not re.fullmatch(rf"traitlens\.({'|'.join(STAGES)})\.rules", module):
            problems.append(f"imports from {module}, not a traitlens.<stage>.rules")
        if names != [(rule, None)]:
            problems.append(f"must import exactly {rule} from {module}, got {names}")
    call = body[-1] if body else None
    expected = f"run_rule({rule}, snakemake)"
    if not (
        isinstance(call, ast.Expr)
        and isinstance(call.value, ast.Call)
        and ast.unparse(call.value) == expected
    ):
        problems.append(f"must end with {expected}")
    return problems


def stage_of(source: str) -> str:
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module.endswith(".rules"):
            return node.module.split(".")[1]
    raise AssertionError("no traitlens.<stage>.rules import")


RULES = rule_scripts(REPO / "rules")
# imported here, not in a test: a first import of scipy or h5py runs lscpu / uname
RULE_MODULES = {stage: importlib.import_module(f"traitlens.{stage}.rules") for stage in STAGES}


def mismatched_scripts(rules: dict[str, tuple[str, str | None]]) -> dict[str, str | None]:
    """Rules whose ``script:`` is not ``workflow_scripts/<rule name>.py``."""
    return {
        rule: script
        for rule, (_, script) in rules.items()
        if script != f"../workflow_scripts/{rule}.py"
    }


def test_every_rule_runs_the_entry_script_named_after_it():
    assert len(RULES) >= 21
    assert mismatched_scripts(RULES) == {}
    scripts = {p.stem for p in SCRIPTS.glob("*.py")}
    assert scripts == set(RULES), "an entry script without a rule, or a rule without one"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_entry_script_is_the_adapter_of_its_rule_function(rule):
    smk, _ = RULES[rule]
    source = (SCRIPTS / f"{rule}.py").read_text()
    assert adapter_problems(source, rule, smk) == []
    module = RULE_MODULES[stage_of(source)]
    function = getattr(module, rule, None)
    assert callable(function), f"traitlens.{stage_of(source)}.rules has no function {rule}"
    assert function.__module__ == module.__name__ and function.__name__ == rule
    assert function.__doc__, f"{rule}: say what the rule makes"


GOOD = '''"""Rule extract_shard (rules/extract.smk): frames."""

from traitlens.core.errors import run_rule
from traitlens.extract.rules import extract_shard

run_rule(extract_shard, snakemake)  # noqa: F821
'''


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (GOOD.replace("run_rule(extract_shard, snakemake)", "x = 1\nrun_rule(extract_shard, snakemake)"), "statements"),  # noqa: E501
        (GOOD.replace("import extract_shard", "import detect_faces").replace("(extract_shard,", "(detect_faces,"), "must import exactly extract_shard"),  # noqa: E501
        (GOOD.replace("(extract_shard, snakemake)", "(extract_shard, snakemake, threads=2)"), "must end with"),  # noqa: E501
        (GOOD.replace("traitlens.extract.rules", "traitlens.extract.extract_shard"), "not a traitlens.<stage>.rules"),  # noqa: E501
        (GOOD.replace("Rule extract_shard", "Entry"), "docstring"),
        (GOOD.replace("import extract_shard", "import extract_shard as main").replace("(extract_shard,", "(main,"), "must import exactly"),  # noqa: E501
    ],
)  # fmt: skip
def test_the_checker_flags_a_script_that_is_not_the_adapter(source, problem):
    assert adapter_problems(GOOD, "extract_shard", "extract") == []
    problems = adapter_problems(source, "extract_shard", "extract")
    assert any(problem in p for p in problems), problems


def test_the_rule_parser_reads_each_rules_script(tmp_path):
    (tmp_path / "a.smk").write_text(
        'rule one:\n    output:\n        "x",\n    script:\n        "../workflow_scripts/two.py"\n'
        "\n\nif True:\n\n    rule three:\n        script:\n"
        "            '../workflow_scripts/three.py'\n"
        "rule four:\n    shell:\n        'true'\n"
    )
    rules = rule_scripts(tmp_path)
    assert rules == {
        "one": ("a", "../workflow_scripts/two.py"),
        "three": ("a", "../workflow_scripts/three.py"),
        "four": ("a", None),
    }
    # negative control: a script named after another rule, and a rule without a script
    assert mismatched_scripts(rules) == {"one": "../workflow_scripts/two.py", "four": None}


# --- run_rule ------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_run_rule_logs_to_the_job_log_and_turns_a_user_error_into_exit_1(tmp_path):
    log = tmp_path / "job.log"
    seen = []

    def fine(job):
        seen.append(job)
        logging.getLogger("traitlens.x").info("did %s", job.params.what)

    job = SimpleNamespace(params=SimpleNamespace(what="it"), log=[str(log)])
    run_rule(fine, job)
    assert seen == [job] and "did it" in log.read_text()

    def bad(job):
        raise UserError("config x.y: must be 2")

    with pytest.raises(SystemExit) as stop:
        run_rule(bad, job)
    assert stop.value.code == 1
    assert "config x.y: must be 2" in log.read_text() and "Traceback" not in log.read_text()

    def bug(job):
        raise KeyError("a bug")

    with pytest.raises(KeyError):  # not a user error: the traceback stays
        run_rule(bug, job)


@pytest.mark.usefixtures("restore_logging")
def test_run_rule_hides_the_entry_script_from_spawned_workers_while_the_rule_runs(monkeypatch):
    # A spawned pool worker (generate_demo renders in one) first runs __main__'s file: the
    # entry script, whose snakemake object exists only in the job's process. While the rule
    # runs __main__ names no file; afterwards (also after an error) it names it again.
    main = sys.modules["__main__"]
    monkeypatch.setattr(main, "__file__", "/work/workflow_scripts/generate_demo.py", raising=False)
    seen = []

    def rule(job):
        seen.append(getattr(main, "__file__", None))
        raise UserError("stop")

    with pytest.raises(SystemExit):
        run_rule(rule, SimpleNamespace(log=[]))
    assert seen == [None]
    assert main.__file__ == "/work/workflow_scripts/generate_demo.py"


# --- resources follow the job --------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_workers", "threads", "workers"),
    [(8, 2, 1), (8, 1, 0), (0, 8, 0), (3, 8, 3), (8, 9, 8)],
)
def test_loader_workers_never_exceed_the_jobs_threads_less_one(num_workers, threads, workers):
    assert loader_workers(num_workers, threads) == workers


def test_run_config_takes_amp_from_params_and_the_rest_from_the_config_and_the_job():
    train = {"device": "cpu", "amp": False, "gpu": True, "threads": 9, "num_workers": 8}
    job = SimpleNamespace(params=SimpleNamespace(amp=True), config={"train": train}, threads=3)
    run = run_config(job)
    assert (run.device, run.amp, run.num_workers, run.threads) == ("cpu", True, 2, 3)
