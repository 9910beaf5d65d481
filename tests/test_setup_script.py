"""setup.sh's choices, run by bash on a machine made of stand-ins: which Python builds the
venv, what is refused, the one way shown without root, where the venv goes, and what is
installed with apt-get. The stand-ins (python3.11, conda, module, id, sudo, apt-get...) are
small scripts on a PATH that holds nothing else but the basic tools setup.sh uses; they
write each call to a log, so a test sees what set-up ran. What they stand for (a real
Ubuntu 24.04, Lmod, conda) cannot be reached from the test machine: README.md says so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support.workflow import REPO

pytestmark = pytest.mark.media

# The basic tools setup.sh and the stand-ins call; nothing else of the real PATH is seen.
BASIC_TOOLS = """basename cat chmod cp cut dirname env grep ln mkdir realpath sed sha256sum sort
tail true uname""".split()

FAKE_PYTHON = """#!/bin/bash
# A stand-in Python {version}: answers set-up's probe; -m venv makes a stand-in venv.
case $1 in
  -c) echo "$0 -c (the probe)" >> {log}
      echo "{version} {tools}" ;;
  -m) echo "$0 $*" >> {log}
      [ "$2" = venv ] || exit 1
      mkdir -p "$3/bin"
      cp {bin}/venv-python "$3/bin/python"
      cp {bin}/venv-snakemake "$3/bin/snakemake"
      echo "version = {version}.0" > "$3/pyvenv.cfg" ;;
esac
"""

LOGGING_TOOL = """#!/bin/bash
echo "$(basename "$0") $*" >> {log}
"""

# sudo that asks for a password: -n refuses; without -n it would prompt (logged as PROMPT).
SUDO = """#!/bin/bash
echo "sudo $*" >> {log}
[ "$1" = -n ] || {{ echo PROMPT >> {log}; exit 1; }}
shift
{allowed} || {{ echo "sudo: a password is required" >&2; exit 1; }}
exec "$@"
"""

# apt-get install puts stand-ins of what it installs on PATH.
APT_GET = """#!/bin/bash
echo "apt-get $*" >> {log}
[ "$1" = install ] || exit 0
for package in "$@"; do
  case $package in
    ffmpeg) for tool in ffmpeg ffprobe; do printf '#!/bin/bash\\n' > {bin}/$tool; done ;;
    chromium) printf '#!/bin/bash\\n' > {bin}/chromium ;;
  esac
done
chmod +x {bin}/*
"""

# Lmod's terse listing goes to stderr, a folder heading first, markers such as (D) after.
MODULE = """#!/bin/bash
echo "module $*" >> {log}
cat >&2 <<'EOF'
/apps/modules/all:
{names}
EOF
"""

EASYBUILD_MODULES = [
    "FFmpeg/4.4.2-GCCcore-11.3.0",
    "FFmpeg/6.0-GCCcore-12.3.0(D)",
    "Python/3.10.8-GCCcore-12.2.0",
    "Python/3.11.3-GCCcore-12.3.0",
    "Python/3.12.3-GCCcore-13.3.0",
]


class Machine:
    """A checkout (setup.sh, requirements.txt, constraints.txt) and a PATH of stand-ins in
    ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.checkout = root / "checkout"
        self.bin = root / "bin"
        self.log = root / "calls.log"
        self.home = root / "home"
        for folder in (self.checkout, self.bin, root / "basic", self.home):
            folder.mkdir()
        for name in ("setup.sh", "requirements.txt", "constraints.txt"):
            shutil.copy(REPO / name, self.checkout / name)
        for tool in BASIC_TOOLS:
            (root / "basic" / tool).symlink_to(shutil.which(tool))
        self.log.touch()
        self.tool("venv-python", LOGGING_TOOL.format(log=self.log))
        self.tool("venv-snakemake", LOGGING_TOOL.format(log=self.log))
        self.uid(1000)
        for tool in ("ffmpeg", "ffprobe", "chromium", "sbatch", "slurmctld", "slurmd", "munged"):
            self.tool(tool, "#!/bin/bash\n")

    def tool(self, name: str, script: str) -> None:
        (self.bin / name).write_text(script)
        (self.bin / name).chmod(0o755)

    def remove(self, *names: str) -> None:
        for name in names:
            (self.bin / name).unlink()

    def python(self, name: str, version: str, venv: bool = True) -> None:
        tools = "venv" if venv else "no-venv"
        self.tool(
            name, FAKE_PYTHON.format(version=version, tools=tools, log=self.log, bin=self.bin)
        )

    def uid(self, uid: int) -> None:
        self.tool("id", f'#!/bin/bash\n[ "$1" = -u ] && echo {uid}\n')

    def sudo(self, without_password: bool) -> None:
        allowed = "true" if without_password else "false"
        self.tool("sudo", SUDO.format(log=self.log, allowed=allowed))

    def apt_get(self) -> None:
        self.tool("apt-get", APT_GET.format(log=self.log, bin=self.bin))

    def modules(self, names: list[str]) -> None:
        self.tool("module", MODULE.format(log=self.log, names="\n".join(names)))

    def run(self, *args: str, cwd: Path | None = None, **settings: str):
        env = {"PATH": f"{self.bin}:{self.root / 'basic'}", "HOME": str(self.home), **settings}
        return subprocess.run(
            ["/bin/bash", str(self.checkout / "setup.sh"), *args],
            env=env,
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def machine(tmp_path) -> Machine:
    return Machine(tmp_path)


def chosen_python(result) -> str:
    line = next(x for x in result.stdout.splitlines() if x.startswith("python:"))
    return line.split(None, 1)[1]


# ---- which Python ---------------------------------------------------------------------


def test_python_311_is_preferred_then_312(machine):
    machine.python("python3.11", "3.11")
    machine.python("python3.12", "3.12")
    machine.python("python3", "3.10")
    result = machine.run("check")
    assert result.returncode == 0, result.stderr
    assert chosen_python(result) == f"{machine.bin}/python3.11 (Python 3.11)"

    machine.remove("python3.11")
    result = machine.run("check")
    assert result.returncode == 0, result.stderr
    assert chosen_python(result) == f"{machine.bin}/python3.12 (Python 3.12)"


def test_python3_counts_when_it_is_312(machine):
    machine.python("python3", "3.12")
    assert chosen_python(machine.run("check")) == f"{machine.bin}/python3 (Python 3.12)"
    machine.python("python3", "3.13")
    assert machine.run("check").returncode == 1


def test_other_pythons_are_refused_naming_what_was_found(machine):
    machine.python("python3", "3.10")
    machine.python("python", "3.13")
    result = machine.run("check")
    assert result.returncode == 1
    assert chosen_python(result) == (
        f"Python 3.11 or 3.12 not found (found: python3 = 3.10 ({machine.bin}/python3), "
        f"python = 3.13 ({machine.bin}/python)); TRAITLENS_PYTHON names another interpreter"
    )


def test_one_that_can_make_a_venv_comes_first(machine):
    machine.python("python3.11", "3.11", venv=False)
    machine.python("python3.12", "3.12")
    assert chosen_python(machine.run("check")) == f"{machine.bin}/python3.12 (Python 3.12)"

    machine.remove("python3.12")
    result = machine.run("check")
    assert (
        chosen_python(result) == f"{machine.bin}/python3.11 (Python 3.11, without its venv module)"
    )
    assert result.returncode == 1  # no root here: it cannot add Debian's python3.11-venv
    assert f"missing: the venv module of {machine.bin}/python3.11 (Python 3.11)" in result.stderr


def test_traitlens_python_chooses_the_interpreter(machine):
    machine.python("python3.11", "3.11")
    machine.python("python3.12", "3.12")
    machine.python("python3.10", "3.10")
    result = machine.run("check", TRAITLENS_PYTHON="python3.12")
    assert chosen_python(result) == f"{machine.bin}/python3.12 (Python 3.12)"
    # an interpreter named by its path, outside PATH
    outside = machine.root / "elsewhere"
    outside.mkdir()
    shutil.move(machine.bin / "python3.12", outside / "python3.12")
    result = machine.run("check", TRAITLENS_PYTHON=str(outside / "python3.12"))
    assert chosen_python(result) == f"{outside}/python3.12 (Python 3.12)"

    result = machine.run("check", TRAITLENS_PYTHON="python3.10")
    assert result.returncode == 1
    assert result.stderr == (
        f"setup.sh: TRAITLENS_PYTHON=python3.10: python3.10 = 3.10 ({machine.bin}/python3.10); "
        "traitlens needs Python 3.11 or 3.12\n"
    )
    result = machine.run("demo", TRAITLENS_PYTHON="python3.9")
    assert result.returncode == 1
    assert "TRAITLENS_PYTHON=python3.9: not found" in result.stderr
    assert not any("-m venv" in call for call in machine.calls())


# ---- without root: one way ------------------------------------------------------------


def test_without_root_conda_gives_the_one_way(machine):
    machine.python("python3.11", "3.11")
    machine.remove("ffmpeg", "ffprobe")
    machine.sudo(without_password=False)
    machine.apt_get()
    machine.tool("conda", LOGGING_TOOL.format(log=machine.log))
    result = machine.run("demo")
    assert result.returncode == 1
    assert result.stderr == (
        "setup.sh: missing: ffmpeg and ffprobe.\n"
        "setup.sh: set-up is not root and sudo asks for a password, so set-up cannot install "
        "them with apt-get. One way:\n\n"
        '    conda create -y -p "$HOME/traitlens-env" -c conda-forge ffmpeg\n'
        '    export PATH="$HOME/traitlens-env/bin:$PATH"\n'
        "    bash setup.sh demo\n\n"
        "Put the environment on PATH the same way in each new shell (and job) that runs the "
        "workflow.\n"
    )
    # sudo was only asked whether it needs a password, never to prompt for one
    assert [call for call in machine.calls() if "python" not in call] == ["sudo -n true"]

    # the negative: with sudo that needs no password, apt-get installs ffmpeg instead
    machine.sudo(without_password=True)
    result = machine.run("demo")
    assert result.returncode == 0, result.stderr
    assert "apt-get install -y -qq ffmpeg" in machine.calls()
    assert "PROMPT" not in machine.calls()


def test_without_root_python_and_ffmpeg_come_from_mamba_before_conda(machine):
    machine.python("python3", "3.10")
    machine.remove("ffmpeg", "ffprobe")
    for tool in ("conda", "mamba"):
        machine.tool(tool, LOGGING_TOOL.format(log=machine.log))
    result = machine.run("check")
    assert result.returncode == 1
    assert "there is no apt-get here" in result.stderr
    assert '    mamba create -y -p "$HOME/traitlens-env" -c conda-forge python=3.11 ffmpeg\n' in (
        result.stderr
    )
    assert "    bash setup.sh demo\n" in result.stderr
    assert "conda create" not in result.stderr


def test_without_root_an_active_conda_environment_names_the_tool(machine):
    machine.python("python3", "3.10")
    result = machine.run("check", CONDA_EXE="/opt/conda/bin/conda")
    assert "    /opt/conda/bin/conda create -y -p" in result.stderr
    assert "python=3.11\n" in result.stderr
    assert "Miniforge" not in result.stderr


def test_without_root_the_module_system_comes_first(machine):
    machine.python("python3", "3.10")
    machine.remove("ffmpeg", "ffprobe")
    machine.modules(EASYBUILD_MODULES)
    machine.tool("conda", LOGGING_TOOL.format(log=machine.log))
    result = machine.run("test")
    assert result.returncode == 1
    assert (
        "    module load Python/3.11.3-GCCcore-12.3.0 FFmpeg/6.0-GCCcore-12.3.0\n"
        "    bash setup.sh test\n" in result.stderr
    )
    assert "conda create" not in result.stderr

    # only ffmpeg missing: only its module
    machine.python("python3.12", "3.12")
    result = machine.run("test")
    assert "    module load FFmpeg/6.0-GCCcore-12.3.0\n" in result.stderr


def test_modules_without_python_311_or_312_are_passed_over(machine):
    machine.python("python3", "3.10")
    machine.remove("ffmpeg", "ffprobe")
    machine.modules(
        [n for n in EASYBUILD_MODULES if not n.startswith("Python/3.1")] + ["Python/3.10.8"]
    )
    result = machine.run("check")
    assert "module load" not in result.stderr
    # nothing else here: Miniforge in $HOME, then its mamba
    assert "    curl -LO https://github.com/conda-forge/miniforge/" in result.stderr
    assert '    "$HOME/miniforge3/bin/mamba" create -y -p' in result.stderr

    # a module of conda is used when the site has one
    machine.modules(EASYBUILD_MODULES[:2] + ["Miniforge3/24.1.2-0"])
    result = machine.run("check")
    assert "    module load Miniforge3/24.1.2-0\n    conda create -y -p" in result.stderr
    assert "curl" not in result.stderr


# ---- as root: apt-get ------------------------------------------------------------------


def test_as_root_apt_get_installs_ffmpeg_and_the_test_browser(machine):
    machine.python("python3.11", "3.11")
    machine.remove("ffmpeg", "ffprobe", "chromium")
    machine.uid(0)
    machine.apt_get()
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    calls = machine.calls()
    assert calls.count("apt-get update -qq") == 1
    assert "apt-get install -y -qq ffmpeg" in calls
    assert "apt-get install -y -qq chromium fonts-dejavu-core" in calls
    assert not any(call.startswith("sudo") for call in calls)

    # present already: no apt-get at all
    machine.log.write_text("")
    assert machine.run("test").returncode == 0
    assert not any(call.startswith("apt-get") for call in machine.calls())


def test_without_root_a_missing_browser_is_said_not_fatal(machine):
    machine.python("python3.11", "3.11")
    machine.remove("chromium")
    machine.sudo(without_password=False)
    machine.apt_get()
    result = machine.run("test")
    assert result.returncode == 0, result.stderr
    assert "could not install chromium" in result.stderr
    assert not any(call.startswith("apt-get") for call in machine.calls())

    result = machine.run("demo")  # the browser is for the tests only
    assert "chromium" not in result.stderr


# ---- where the venv goes ---------------------------------------------------------------


def test_traitlens_venv_places_the_venv_and_links_it(machine):
    machine.python("python3.11", "3.11")
    venv = machine.root / "scratch" / "traitlens-venv"
    result = machine.run("demo", "-n", TRAITLENS_VENV=str(venv))
    assert result.returncode == 0, result.stderr
    assert machine.calls() == [
        f"{machine.bin}/python3.11 -c (the probe)",  # what the system lacks
        f"{machine.bin}/python3.11 -c (the probe)",  # which Python builds the venv
        f"{machine.bin}/python3.11 -m venv {venv}",
        "python -m pip install -q --upgrade pip",
        "python -m pip install -q -r requirements.txt -c constraints.txt",
        "snakemake --cores all -n",
    ]
    assert (venv / ".requirements.sha256").is_file()
    link = machine.checkout / ".venv"
    assert link.is_symlink() and link.resolve() == venv.resolve()

    # current venv: nothing rebuilt, no Python needed
    machine.log.write_text("")
    machine.remove("python3.11")
    assert machine.run("demo", TRAITLENS_VENV=str(venv)).returncode == 0
    assert machine.calls() == ["snakemake --cores all"]
    # also through the link alone, without the setting
    machine.log.write_text("")
    assert machine.run("demo").returncode == 0
    assert machine.calls() == ["snakemake --cores all"]

    # requirements.txt changed: the same venv, reinstalled
    machine.python("python3.11", "3.11")
    with (machine.checkout / "requirements.txt").open("a") as requirements:
        requirements.write("# changed\n")
    machine.log.write_text("")
    assert machine.run("demo", TRAITLENS_VENV=str(venv)).returncode == 0
    calls = machine.calls()
    assert "python -m pip install -q -r requirements.txt -c constraints.txt" in calls
    assert not any("-m venv" in call for call in calls)


def test_without_the_setting_the_venv_is_the_checkouts_own(machine):
    machine.python("python3.11", "3.11")
    result = machine.run("demo")
    assert result.returncode == 0, result.stderr
    venv = machine.checkout / ".venv"
    assert f"{machine.bin}/python3.11 -m venv .venv" in machine.calls()
    assert venv.is_dir() and not venv.is_symlink()

    # a venv of its own is kept, with a warning, when TRAITLENS_VENV names another
    elsewhere = machine.root / "elsewhere"
    result = machine.run("demo", TRAITLENS_VENV=str(elsewhere))
    assert result.returncode == 0, result.stderr
    assert "the checkout's .venv is a venv of its own" in result.stderr
    assert venv.is_dir() and not venv.is_symlink()
    assert (elsewhere / ".requirements.sha256").is_file()


def test_a_relative_traitlens_venv_is_taken_from_where_the_command_runs(machine):
    machine.python("python3.11", "3.11")
    work = machine.root / "work" / "project"  # not beside the checkout: ../ differs
    work.mkdir(parents=True)
    result = machine.run("check", cwd=work, TRAITLENS_VENV="../venvs/tl")
    assert result.returncode == 0, result.stderr
    venv = machine.root / "work" / "venvs" / "tl"
    assert f"venv:    {venv} (to create)" in result.stdout
    assert f"link:    {machine.checkout}/.venv -> {venv}" in result.stdout
    # check makes nothing
    assert not venv.parent.exists()
    assert not (machine.checkout / ".venv").exists()
