#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine with Python 3.11:
#   bash setup.sh demo   set up, then run the whole workflow on the embedded demo data set
#   bash setup.sh test   set up, then run the test tiers fastest first, stopping at the first
#                        that fails: unit, media, workflow, cluster (what .ci/run calls);
#                        with arguments (-m unit, tests/test_x.py) it runs plain pytest with them
# Set-up is idempotent: the venv is rebuilt only when requirements.txt changes.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
action=${1:-}
shift || true

die() { echo "setup.sh: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

find_python() {
  for py in python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  return 1
}

apt_install() {
  command -v apt-get >/dev/null || return 1
  echo "setup.sh: installing Debian packages: $*" >&2
  as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

ensure_system_packages() {
  local missing=()
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
  local py
  py=$(find_python) || missing+=(python3.11)
  if [ -n "${py:-}" ] && ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then missing+=(python3.11-venv); fi
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || die "missing ${missing[*]}: install them (Debian: sudo apt-get install ${missing[*]}; conda: conda install -c conda-forge ffmpeg) and rerun"
  fi
}

# The SLURM test starts a one-node cluster on localhost: it needs Debian's daemons.
ensure_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  apt_install slurm-wlm munge \
    || echo "setup.sh: could not install slurm-wlm and munge; the SLURM test will fail (Debian: sudo apt-get install slurm-wlm munge)" >&2
}

ensure_venv() {
  local stamp=$VENV/.requirements.sha256 want
  want=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ -x $VENV/bin/python ] && [ "$(cat $stamp 2>/dev/null)" = "$want" ]; then return 0; fi
  local py
  py=$(find_python) || die "Python 3.11 not found"
  echo "setup.sh: creating $VENV with pinned requirements (first time: several minutes)" >&2
  [ -x $VENV/bin/python ] || "$py" -m venv $VENV
  $VENV/bin/python -m pip install -q --upgrade pip
  $VENV/bin/python -m pip install -q -r requirements.txt
  echo "$want" > $stamp
}

# The test tiers (tests/support/tiers.py), fastest first; the first that fails stops the run.
# The tests: one pytest session runs the tiers unit, media, workflow, cluster in that order
# (tests/support/tiers.py); a failure skips the later tiers, and every tier must hold a test.
run_tests() {
  set +e
  $VENV/bin/python -m pytest "$@"
  local rc=$?
  set -e
  # pytest exits 5 when it collected no test: that must not pass as green.
  [ $rc -eq 5 ] && die "pytest collected no tests"
  return $rc
}

case "$action" in
  demo)
    ensure_system_packages
    ensure_venv
    exec $VENV/bin/snakemake --cores all "$@"
    ;;
  test)
    ensure_system_packages
    ensure_slurm
    ensure_venv
    if [ $# -gt 0 ]; then  # your own selection, e.g. -m unit: plain pytest with it
      run_tests "$@"
    else
      run_tests --require-tiers
    fi
    ;;
  *)
    die "usage: bash setup.sh demo|test [extra snakemake/pytest arguments]"
    ;;
esac
