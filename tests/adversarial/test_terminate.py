"""SIGTERM ends `grade` promptly in every state, with nothing left running.

A CI runner or a batch supervisor stops a grader with SIGTERM: while it starts, while it
reads a submission, while the kernel runs an endless loop, while it probes. Each time the
grader ends within seconds, says so in one line (exit 130; in the first instant of start-up,
before Python has read its arguments, the signal's own exit, -15), and no kernel or helper
of that run is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.adversarial.helpers import ADVERSARIAL, ASSIGNMENT, GRADE

LOOP = ADVERSARIAL / "infinite_loop.ipynb"


def _terminate_after(args: list[str], delay: float) -> tuple[int, str, float, list[int]]:
    proc = subprocess.Popen([*GRADE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    try:
        family = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        family = []
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - started
    time.sleep(0.5)
    alive = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    return proc.returncode, err, took, alive


@pytest.mark.parametrize("delay", [0.5, 2.0, 5.0, 9.0])
def test_sigterm_while_starting_running_or_probing_ends_the_run_in_one_line(delay: float):
    rc, err, took, alive = _terminate_after([str(LOOP), "--assignment", ASSIGNMENT, "--timeout", "20"], delay)
    assert rc in (130, -signal.SIGTERM), (rc, err)
    if rc == 130:
        assert len(err.strip().splitlines()) == 1 and err.strip().startswith("grade: interrupted"), err
    assert "Traceback" not in err
    assert took < 10, took
    assert alive == []


def test_sigterm_ends_a_grade_blocked_on_nothing_even_when_given_a_pipe(tmp_path: Path):
    fifo = tmp_path / "submission.ipynb"
    os.mkfifo(fifo)
    started = time.monotonic()
    p = subprocess.run([*GRADE, str(fifo), "--assignment", ASSIGNMENT], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "named pipe" in p.stderr and time.monotonic() - started < 30
