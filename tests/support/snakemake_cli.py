"""Snakemake's command line, started from a process that has already imported it.

Importing ``snakemake.cli`` is most of a dry run's cost (2.5 of 3.6 s on the 2-core VM),
and the workflow tests start Snakemake well over a hundred times. A multiprocessing
forkserver imports it once; every call forks from that server and runs
``snakemake.cli.main(argv)``, which is exactly what the ``snakemake`` console script
runs, in a fresh child with its own environment, standard streams and, where asked, its
own session. The server is a new interpreter (not a fork of pytest), so nothing the
tests imported before, such as torch's thread pools, reaches Snakemake.

This module is imported by that server: keep its imports light.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

_CONTEXT = None


def _context():
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        # the server imports these once; each call's child is forked from it
        _CONTEXT.set_forkserver_preload(["snakemake.cli", __name__])
    return _CONTEXT


def _exit_code(code) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _snakemake_child(argv, env, cwd, stdout_path, stderr_path, own_session, prelude) -> None:
    """The child: the caller's environment, folder and streams, ``prelude()`` where given,
    then Snakemake's own main."""
    if own_session:
        os.setsid()
    os.chdir(cwd)  # the server's folder is the one of the first call, not this one's
    os.environ.clear()
    os.environ.update(env)
    for fd, path in ((1, stdout_path), (2, stderr_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = ["snakemake", *argv]
    code = 1
    try:
        if prelude is not None:
            prelude()
        from snakemake.cli import main

        main(argv)
        code = 0
    except SystemExit as stop:  # main() always ends in sys.exit
        code = _exit_code(stop.code)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no multiprocessing clean-up: the exit status is Snakemake's


def run_snakemake_cli(
    argv: list[str], env: dict[str, str], timeout: float, own_session: bool, prelude=None
) -> subprocess.CompletedProcess:
    """``snakemake *argv`` with ``env`` as its whole environment, as subprocess.run would
    run it (text output captured, TimeoutExpired after ``timeout`` seconds, a negative
    return code for a signal). ``prelude``, a module-level function, runs in the child
    first (it is pickled by name)."""
    with tempfile.TemporaryDirectory(prefix="snakemake-cli-") as folder:
        stdout, stderr = Path(folder) / "stdout", Path(folder) / "stderr"
        child = _context().Process(
            target=_snakemake_child,
            args=(argv, env, os.getcwd(), str(stdout), str(stderr), own_session, prelude),
        )
        child.start()
        child.join(timeout)
        if child.exitcode is None:
            try:  # its whole session where it has one (the jobs with it)
                if own_session:
                    os.killpg(child.pid, signal.SIGKILL)
                else:
                    child.kill()
            except ProcessLookupError:
                pass
            child.join()
            raise subprocess.TimeoutExpired(["snakemake", *argv], timeout)
        # a child that failed before taking its streams over left no files: its error
        # went to this process's stderr
        out, err = (p.read_text(errors="replace") if p.exists() else "" for p in (stdout, stderr))
        return subprocess.CompletedProcess(["snakemake", *argv], child.exitcode, out, err)
