"""The test tiers (tests/support/tiers.py) and the layout of tests/: each test has exactly
one tier, a unit test that starts a process fails, and no test file imports another."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from support.tiers import MESSAGE, TIERS

TESTS = Path(__file__).resolve().parent
PLUGIN = 'pytest_plugins = ["support.tiers"]\n'


def imported_test_modules(source: str) -> list[str]:
    """Modules named ``test_*`` or ``conftest`` that ``source`` imports (at any depth):
    helpers shared by tests belong in the ``support`` package."""

    def is_test_module(name: str) -> bool:
        return any(p.startswith("test_") or p == "conftest" for p in name.split("."))

    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if is_test_module(a.name)}
        elif isinstance(node, ast.ImportFrom) and is_test_module(node.module or ""):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom):  # from package import test_module
            names = (f"{node.module or '.'}.{a.name}" for a in node.names)
            found |= {name for name in names if is_test_module(name)}
    return sorted(found)


def test_no_test_file_imports_another():
    offenders = {
        str(path.relative_to(TESTS)): imported_test_modules(path.read_text())
        for path in sorted(TESTS.rglob("*.py"))
    }
    assert not {k: v for k, v in offenders.items() if v}, "move shared helpers to tests/support/"


def test_the_import_check_sees_test_modules_and_conftest():
    source = (
        "import os\nfrom support.media import make_clip\nfrom test_detectors import write_dump\n"
        "import conftest\ndef f():\n    from support import test_helpers\n"
    )
    assert imported_test_modules(source) == ["conftest", "support.test_helpers", "test_detectors"]
    assert imported_test_modules("from support.workflow import REPO\nimport testing\n") == []


def test_every_tier_is_declared_in_pyproject():
    pytest_options = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]
    declared = [line.split(":")[0] for line in pytest_options["ini_options"]["markers"]]
    assert declared[: len(TIERS)] == list(TIERS)  # in the order setup.sh runs them


SPAWNS = {
    "popen": "subprocess.run(['true'])",
    "system": "os.system('true')",
    "posix_spawn": "os.posix_spawn('/bin/true', ['true'], {})",
    "fork": "os.fork()",
}


@pytest.mark.parametrize("how", list(SPAWNS))
def test_a_unit_test_that_starts_a_process_fails(pytester, how):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(
        test_spawn=f"""
        import os, subprocess

        def test_spawns():
            {SPAWNS[how]}

        def test_swallows_the_failure():
            try:
                {SPAWNS[how]}
            except BaseException:
                pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([f"*{MESSAGE.split(' (')[0]}*"])


def test_the_guard_covers_fixtures_of_any_scope_and_only_unit_tests(pytester):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(
        test_scope="""
        import subprocess
        import pytest

        PLAIN = subprocess.Popen.__init__  # read at import: no guard installed yet

        @pytest.fixture(scope="module")
        def clip():
            subprocess.run(["true"])

        def test_unit_using_a_spawning_module_fixture(clip):
            pass

        def test_unit_is_guarded():
            assert subprocess.Popen.__init__ is not PLAIN

        @pytest.mark.media
        def test_media_is_not_guarded():
            assert subprocess.Popen.__init__ is PLAIN
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "unit")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_unit_using_a_spawning_module_fixture*"])
    # run alone: in one session the unit tier's error would skip it
    media = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "media")
    media.assert_outcomes(passed=1)


def test_an_unmarked_test_is_unit_and_two_tiers_are_an_error(pytester):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(
        test_marks="""
        import pytest

        def test_plain():
            pass

        @pytest.mark.workflow
        def test_workflow():
            pass
        """
    )
    unit = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-m", "unit", "--co", "-q")
    unit.stdout.fnmatch_lines(["test_marks.py::test_plain", "1/2 tests collected*"])
    rest = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-m", "not (unit or media or workflow or cluster)", "--co"
    )
    assert rest.ret == pytest.ExitCode.NO_TESTS_COLLECTED

    pytester.makepyfile(
        test_double="""
        import pytest

        pytestmark = pytest.mark.media

        @pytest.mark.workflow
        def test_both():
            pass
        """
    )
    double = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--co")
    assert double.ret == pytest.ExitCode.USAGE_ERROR
    double.stderr.fnmatch_lines(
        ["*exactly one tier*", "*test_double.py::test_both: media, workflow"]
    )


TIERED = """
import pytest

@pytest.mark.cluster
def test_cluster():
    pass

@pytest.mark.workflow
def test_workflow():
    pass

@pytest.mark.media
def test_media():
    pass

def test_unit():
    assert {ok}
"""


def test_one_session_runs_the_tiers_fastest_first_and_stops_at_the_first_failing_tier(pytester):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(test_order=TIERED.format(ok="True"))
    passed = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v", "--require-tiers")
    passed.assert_outcomes(passed=4)
    passed.stdout.fnmatch_lines(
        ["*::test_unit PASSED*", "*::test_media PASSED*", "*::test_workflow PASSED*",
         "*::test_cluster PASSED*", "*test tiers*", "unit *1 passed"]
    )  # fmt: skip

    # negative control: a failing unit test leaves every later tier unrun
    pytester.makepyfile(test_order=TIERED.format(ok="False"))
    failed = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-rs")
    failed.assert_outcomes(failed=1, skipped=3)
    failed.stdout.fnmatch_lines(["*the unit tier failed: the media tier does not run*"])


def test_require_tiers_refuses_a_tier_with_no_test(pytester):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(test_order=TIERED.format(ok="True"))
    empty = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--require-tiers", "-k", "not media"
    )
    assert empty.ret == pytest.ExitCode.USAGE_ERROR
    empty.stderr.fnmatch_lines(["*test tier(s) with no test: media*"])


def test_a_process_started_while_a_module_is_imported_is_the_librarys_not_the_tests(pytester):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(
        probes_at_import="""
        import subprocess, sys
        PLATFORM = subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).stdout
        """,
        test_imports="""
        import subprocess, sys

        def test_imports_a_probing_library():
            import probes_at_import
            assert probes_at_import.PLATFORM.strip() == b"1"

        def test_spawns_itself():  # negative control: the test's own process still fails
            subprocess.run([sys.executable, "-c", "pass"])
        """,
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*unit tests spawn no process*"])


def test_an_opt_in_tier_runs_only_when_asked_for(pytester):
    pytester.makeconftest(PLUGIN)
    pytester.makepyfile(
        test_order=TIERED.format(ok="True")
        + "\n@pytest.mark.fullsize\ndef test_fullsize():\n    pass\n"
    )
    plain = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v", "--require-tiers")
    plain.assert_outcomes(passed=4, deselected=1)  # the default run leaves it out
    assert "test_fullsize" not in plain.stdout.str().replace("deselected", "")
    asked = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-v", "-m", "fullsize")
    asked.assert_outcomes(passed=1, deselected=4)
    asked.stdout.fnmatch_lines(["*::test_fullsize PASSED*"])
