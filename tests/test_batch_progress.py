"""Batch progress: a live rich bar on a terminal (a real pty), a few plain lines elsewhere."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from grader.batch.gradebook import Result
from grader.batch.progress import Progress

ROOT = Path(__file__).resolve().parent.parent


def _result(status: str) -> Result:
    return Result("s", "", "", "", 0, 0, 0.0, 0.0, status, "", {}, {}, "0")


def test_plain_lines_are_few() -> None:
    out = io.StringIO()
    p = Progress(250, skipped=3, stream=out, live=False)
    for i in range(250):
        p.add(_result("graded" if i % 5 else "error"))
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "batch: 250 to grade, 3 already graded"
    assert 10 <= len(lines) <= 12  # a line per tenth, not per submission
    assert lines[-1].startswith("batch: 250/250  graded 200  errors 50  timeouts 0")


def test_live_bar_on_a_terminal(tmp_path: Path) -> None:
    # Students without notebooks are error rows that need no kernel: a quick batch.
    for name in ("ann", "ben", "cid"):
        (tmp_path / "src" / name).mkdir(parents=True)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from grader.cli import main; main()", "batch", str(tmp_path / "src"),
         "-a", "sigmoid-2-3-1", "--db", str(tmp_path / "gb.sqlite")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm", "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    assert proc.wait(timeout=60) == 1  # error rows: the batch ran, some submissions failed
    os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in screen  # drawn and redrawn in place
    assert "3/3" in screen and "graded 0  errors 3  timeouts 0" in screen and "ETA" in screen
    assert "batch: 3 students: 0 graded, 3 errors, 0 timeouts" in out


def test_quiet_shows_no_progress(tmp_path: Path) -> None:
    for name in ("ann", "ben"):
        (tmp_path / "src" / name).mkdir(parents=True)
    r = subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", "batch", str(tmp_path / "src"),
                        "-a", "sigmoid-2-3-1", "--db", str(tmp_path / "gb.sqlite"), "--quiet"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 1 and r.stderr == ""
    assert r.stdout == f"batch: 2 students: 0 graded, 2 errors, 0 timeouts (2 graded now, 0 already in {tmp_path / 'gb.sqlite'})\n"
