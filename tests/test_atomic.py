"""Atomic outputs: nothing under the final name until the write is complete, no leftovers."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from traitlens.core.atomic import atomic_path, temp_next_to, write_text_atomic, write_tsv


def test_output_appears_only_on_success(tmp_path):
    final = tmp_path / "sub" / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        assert not final.exists()
        raise RuntimeError("the job failed")
    assert not final.exists() and list(final.parent.iterdir()) == []
    write_text_atomic(final, "done")
    assert final.read_text() == "done" and list(final.parent.iterdir()) == [final]


def test_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.media
def test_a_killed_writer_leaves_only_a_temp_file_which_the_retry_removes(tmp_path):
    final = tmp_path / "shard [1].h5"  # glob characters in the name must not matter
    other = tmp_path / ".tmp-other.h5.abc"  # another output's temp file is not touched
    other.write_text("x")
    code = (
        "import os, signal, sys\n"
        "from traitlens.core.atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half a shard')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run([sys.executable, "-c", code, str(final)], env=env)
    assert killed.returncode == -9
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert not final.exists() and len(leftovers) == 2 and leftovers[1].startswith(".tmp-shard")

    tmp = temp_next_to(final)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, tmp.name])
    tmp.unlink()


def test_tsv_spells_booleans_and_missing_values_one_way(tmp_path):
    table = pd.DataFrame({"ok": [True, False], "x": [0.5, float("nan")]})
    write_tsv(table, tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == "ok\tx\ntrue\t0.5\nfalse\t\n"
