#!/usr/bin/env bash
# One entry point, for Debian 12 (Python 3.11) or Ubuntu 24.04 (Python 3.12):
#   bash setup.sh demo    set up, then run the whole workflow on the embedded demo data set
#   bash setup.sh test    set up, then run the test tiers fastest first, stopping at the first
#                         that fails: unit, media, workflow, cluster (what .ci/run calls);
#                         with arguments (-m unit, tests/test_x.py) it runs plain pytest with them
#   bash setup.sh check   say what set-up would use and install here; changes nothing
# Set-up is idempotent: the venv is rebuilt only when requirements.txt or constraints.txt
# changes (constraints.txt: every package's tested version, so a new venv gets the same).
# Settings, from the environment:
#   TRAITLENS_VENV    where the venv goes (default .venv in the checkout; a relative path is
#                     taken from where you run the command). Elsewhere, the checkout's .venv
#                     becomes a link to it, so the commands written as .venv/bin/... still work.
#   TRAITLENS_PYTHON  the interpreter that builds the venv (Python 3.11 or 3.12). Default:
#                     python3.11, else python3.12, else python3 or python when it is one of
#                     them; one that can make a venv before one that cannot.
set -euo pipefail

caller_dir=$PWD
cd "$(dirname "$0")"

VENV=.venv
if [ -n "${TRAITLENS_VENV:-}" ]; then
  case $TRAITLENS_VENV in /*) VENV=$TRAITLENS_VENV ;; *) VENV=$caller_dir/$TRAITLENS_VENV ;; esac
  VENV=$(realpath -m -s -- "$VENV")
fi
action=${1:-}
shift || true

die() { echo "setup.sh: $*" >&2; exit 1; }

# ---- Python ---------------------------------------------------------------------------
# mediapipe 0.10.21, the last release with the legacy face mesh, has wheels up to 3.12.
PROBE='import sys
try:
    import ensurepip, venv
    tools = "venv"
except ImportError:
    tools = "no-venv"
print("%d.%d" % sys.version_info[:2], tools)'

# Picks the interpreter that builds the venv: TRAITLENS_PYTHON, else the best of python3.11,
# python3.12, python3, python: 3.11 before 3.12, one that can make a venv before one that
# cannot. Sets PY, PY_VERSION, PY_VENV (venv or no-venv); PY_FOUND lists what was looked at.
find_python() {
  PY='' PY_VERSION='' PY_VENV='' PY_FOUND=''
  local names=(python3.11 python3.12 python3 python) name path version tools rank best=9
  [ -n "${TRAITLENS_PYTHON:-}" ] && names=("$TRAITLENS_PYTHON")
  for name in "${names[@]}"; do
    path=$(command -v "$name") || continue
    read -r version tools <<<"$("$path" -c "$PROBE" 2>/dev/null)" || true
    PY_FOUND+="${PY_FOUND:+, }$name = ${version:-does not run} ($path)"
    case $version in 3.11) rank=0 ;; 3.12) rank=1 ;; *) continue ;; esac
    [ "$tools" = venv ] || rank=$((rank + 2))
    if [ "$rank" -lt "$best" ]; then best=$rank PY=$path PY_VERSION=$version PY_VENV=$tools; fi
  done
  [ -n "$PY" ]
}

python_refusal() {
  if [ -n "${TRAITLENS_PYTHON:-}" ]; then
    echo "TRAITLENS_PYTHON=$TRAITLENS_PYTHON: ${PY_FOUND:-not found}; traitlens needs Python 3.11 or 3.12"
  else
    echo "Python 3.11 or 3.12 not found (found: ${PY_FOUND:-no python on PATH}); TRAITLENS_PYTHON names another interpreter"
  fi
}

# ---- the venv -------------------------------------------------------------------------
requirements_sha() { cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1; }

venv_current() {
  [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" = "$(requirements_sha)" ]
}

# A venv elsewhere (TRAITLENS_VENV) gets a .venv link in the checkout, so that the commands
# written as .venv/bin/... (README, docs, benchmarks) keep working. link_state says what
# to do: nothing (.venv is the venv), link, or keep (.venv is a venv of its own).
link_state() {
  if [ "$(realpath -m -- "$VENV")" = "$(realpath -m -- .venv)" ]; then echo nothing
  elif [ -L .venv ] || [ ! -e .venv ]; then echo link
  else echo keep; fi
}

KEEP_NOTE="the checkout's .venv is a venv of its own: the commands written as .venv/bin/... use it, not $VENV (remove .venv and rerun to link it)"

link_venv() {
  case $(link_state) in
    link) ln -sfn "$VENV" .venv ;;
    keep) echo "setup.sh: warning: $KEEP_NOTE" >&2 ;;
  esac
}

ensure_venv() {
  if ! venv_current; then
    find_python || die "$(python_refusal)"
    echo "setup.sh: creating $VENV with Python $PY_VERSION ($PY) and the pinned requirements (first time: several minutes, about 7 GB)" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.txt -c constraints.txt
    requirements_sha >"$VENV/.requirements.sha256"
  fi
  link_venv
}

# ---- system packages ------------------------------------------------------------------
# apt-get runs as root or through sudo that asks no password; never a prompt.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

can_install() {
  command -v apt-get >/dev/null || return 1
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }
}

why_no_apt() {
  if ! command -v apt-get >/dev/null; then echo "there is no apt-get here"
  else echo "set-up is not root and sudo asks for a password"; fi
}

apt_updated=''
apt_install() {
  can_install || return 1
  echo "setup.sh: installing Debian packages: $*" >&2
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq || return 1; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# Debian 12 packages Python 3.11, Ubuntu 24.04 Python 3.12 (apt-get update ran before).
python_packages() {
  local v
  for v in 3.11 3.12; do
    if apt-cache show "python$v" >/dev/null 2>&1; then echo "python$v python$v-venv"; return; fi
  done
  echo "python3.11 python3.11-venv"
}

# What the system lacks for set-up: NEED_FFMPEG, NEED_PYTHON (no 3.11/3.12, or one without
# its venv module); a current venv needs no Python.
plan_system() {
  NEED_FFMPEG='' NEED_PYTHON=''
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || NEED_FFMPEG=1
  venv_current && return 0
  if find_python; then
    [ "$PY_VENV" = venv ] || NEED_PYTHON=1
  else
    [ -z "${TRAITLENS_PYTHON:-}" ] || die "$(python_refusal)"
    NEED_PYTHON=1
  fi
}

needs_text() {
  local needs=()
  [ -z "$NEED_FFMPEG" ] || needs+=("ffmpeg and ffprobe")
  if [ -n "$NEED_PYTHON" ]; then
    if [ -n "$PY" ]; then needs+=("the venv module of $PY (Python $PY_VERSION)")
    else needs+=("$(python_refusal)"); fi
  fi
  local IFS=';'
  echo "${needs[*]}"
}

# Module names from the module system (Lmod or Environment Modules), one a line.
module_names() {
  {
    if [ -n "${LMOD_CMD:-}" ] && [ -x "$LMOD_CMD" ]; then "$LMOD_CMD" bash -t avail
    elif command -v module >/dev/null; then module -t avail
    fi
  } 2>&1 | sed -E 's/\([A-Za-z]+\)$//; s/[[:space:]]+$//' | grep -E '^[A-Za-z0-9_.+-]+(/[^[:space:]]*)?$' || true
}

newest() { { grep -iE "$1" || true; } | sort -V | tail -n 1; }

# Without apt-get: ONE way to get what is missing, as commands to copy. In order: the
# module system's own python and ffmpeg; conda, mamba or micromamba (on PATH, or the one an
# active environment names), or the module system's conda; else Miniforge in $HOME.
manual_path() {
  local names='' python_module='' ffmpeg_module='' conda_module='' tool='' packages=() t
  local rerun="bash setup.sh ${action/check/demo}"
  if [ -n "${LMOD_CMD:-}" ] || command -v module >/dev/null; then
    names=$(module_names)
    python_module=$(newest '^python3?/3\.11([.-]|$)' <<<"$names")
    [ -n "$python_module" ] || python_module=$(newest '^python3?/3\.12([.-]|$)' <<<"$names")
    ffmpeg_module=$(newest '^ffmpeg(/|$)' <<<"$names")
    conda_module=$(newest '^(miniforge3?|mambaforge|miniconda3?|anaconda3?|conda|mamba|micromamba)(/|$)' <<<"$names")
  fi
  for t in mamba micromamba conda; do command -v "$t" >/dev/null && { tool=$t; break; }; done
  [ -n "$tool" ] || tool=${MAMBA_EXE:-${CONDA_EXE:-}}
  [ -z "$NEED_PYTHON" ] || packages+=(python=3.11)
  [ -z "$NEED_FFMPEG" ] || packages+=(ffmpeg)

  {
    echo "setup.sh: missing: $(needs_text)."
    echo "setup.sh: $(why_no_apt), so set-up cannot install them with apt-get. One way:"
    echo
    if [ -n "$names" ] && { [ -z "$NEED_PYTHON" ] || [ -n "$python_module" ]; } \
      && { [ -z "$NEED_FFMPEG" ] || [ -n "$ffmpeg_module" ]; }; then
      echo "    module load ${NEED_PYTHON:+$python_module }${NEED_FFMPEG:+$ffmpeg_module}"
      echo "    $rerun"
      echo
      echo "Load the same modules in each new shell (and job) that runs the workflow."
    else
      local env_dir='$HOME/traitlens-env'
      if [ -n "$tool" ]; then
        :
      elif [ -n "$conda_module" ]; then
        echo "    module load $conda_module"
        tool=conda
      else
        echo "    curl -LO https://github.com/conda-forge/miniforge/releases/latest/download/Miniforge3-Linux-$(uname -m).sh"
        echo "    bash Miniforge3-Linux-$(uname -m).sh -b -p \"\$HOME/miniforge3\""
        tool='"$HOME/miniforge3/bin/mamba"'
      fi
      echo "    $tool create -y -p \"$env_dir\" -c conda-forge ${packages[*]}"
      echo "    export PATH=\"$env_dir/bin:\$PATH\""
      echo "    $rerun"
      echo
      echo "Put the environment on PATH the same way in each new shell (and job) that runs the workflow."
    fi
  } >&2
}

ensure_system_packages() {
  plan_system
  [ -n "$NEED_FFMPEG$NEED_PYTHON" ] || return 0
  if ! can_install; then
    manual_path
    exit 1
  fi
  local packages=() python_debs=()
  [ -z "$NEED_FFMPEG" ] || packages+=(ffmpeg)
  if [ -n "$NEED_PYTHON" ]; then
    if [ -n "$PY" ]; then
      packages+=("python$PY_VERSION-venv")
    else
      as_root apt-get update -qq && apt_updated=1
      read -ra python_debs <<<"$(python_packages)"
      packages+=("${python_debs[@]}")
    fi
  fi
  apt_install "${packages[@]}" || die "apt-get install ${packages[*]} failed"
  plan_system
  [ -z "$NEED_FFMPEG$NEED_PYTHON" ] || die "still missing after apt-get install ${packages[*]}: $(needs_text)"
}

# The SLURM test starts a one-node cluster on localhost: it needs Debian's daemons.
ensure_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  apt_install slurm-wlm munge \
    || echo "setup.sh: could not install slurm-wlm and munge; the SLURM test will fail (Debian: sudo apt-get install slurm-wlm munge)" >&2
}

# A report test renders the Snakemake report in headless Chromium: Debian's chromium, with
# a font for the text.
ensure_browser() {
  command -v chromium >/dev/null && return 0
  apt_install chromium fonts-dejavu-core \
    || echo "setup.sh: could not install chromium; the test that opens the report in a browser cannot run (Debian: sudo apt-get install chromium fonts-dejavu-core)" >&2
}

# ---- check ----------------------------------------------------------------------------
check() {
  plan_system
  local where=$VENV
  [ "$VENV" = .venv ] && where="$PWD/.venv"
  if venv_current; then
    echo "venv:    $where (current)"
    echo "python:  the venv's, Python $(sed -n 's/^version *= *//p' "$VENV/pyvenv.cfg" 2>/dev/null)"
  else
    if [ -x "$VENV/bin/python" ]; then echo "venv:    $where (to update: requirements.txt or constraints.txt changed)"
    else echo "venv:    $where (to create)"; fi
    if [ -n "$PY" ]; then
      echo "python:  $PY (Python $PY_VERSION$([ "$PY_VENV" = venv ] || echo ", without its venv module"))"
    else
      echo "python:  $(python_refusal)"
    fi
  fi
  case $(link_state) in
    link) echo "link:    $PWD/.venv -> $VENV" ;;
    keep) echo "link:    none: $KEEP_NOTE" ;;
  esac
  echo "ffmpeg:  $(command -v ffmpeg || echo missing)"
  echo "chromium (tests only): $(command -v chromium || echo missing)"
  echo "sbatch (tests only):   $(command -v sbatch || echo missing)"
  if [ -z "$NEED_FFMPEG$NEED_PYTHON" ]; then
    echo "ready:   nothing to install from the system"
  elif can_install; then
    echo "ready:   set-up will install the missing packages with apt-get"
  else
    manual_path
    return 1
  fi
}

case "$action" in
  demo)
    ensure_system_packages
    ensure_venv
    exec "$VENV/bin/snakemake" --cores all "$@"
    ;;
  test)
    ensure_system_packages
    ensure_slurm
    ensure_browser
    ensure_venv
    # One pytest session runs the tiers unit, media, workflow, cluster in that order
    # (tests/support/tiers.py); a failure skips the later tiers, and every tier must hold a test.
    set +e
    if [ $# -gt 0 ]; then  # your own selection, e.g. -m unit: plain pytest with it
      "$VENV/bin/python" -m pytest "$@"
    else
      "$VENV/bin/python" -m pytest --require-tiers
    fi
    rc=$?
    set -e
    # pytest exits 5 when it collected no test: that must not pass as green.
    [ $rc -eq 5 ] && die "pytest collected no tests"
    exit $rc
    ;;
  check)
    check
    ;;
  *)
    die "usage: bash setup.sh demo|test|check [extra snakemake/pytest arguments]"
    ;;
esac
