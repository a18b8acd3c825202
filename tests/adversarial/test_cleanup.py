"""Nothing of a run outlives it: kernels, their children, temp folders, connection files.

The grader is run as a subprocess with its own TMPDIR, so whatever it leaves behind is
found there (and in the process table, by that folder's name in a command line).
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from grader import grade_notebook
from tests.conftest import ASSIGNMENTS

from .helpers import ADVERSARIAL, GRADE, clean_env, processes_mentioning


def start_grading(tmp: Path, notebook: str, *args: str) -> subprocess.Popen[str]:
    """`grade` on an attack notebook, with every temp file under `tmp`."""
    tmp.mkdir()
    return subprocess.Popen([*GRADE, str(ADVERSARIAL / notebook), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=clean_env(TMPDIR=str(tmp)))


def wait_for_kernel(tmp: Path, timeout: float = 60) -> None:
    """Until a kernel of the run is up and its loop cell is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processes_mentioning(str(tmp)) and any(tmp.glob("grader-*/rt/kernel.json")):
            time.sleep(3)  # past the prelude and into the endless cell
            return
        time.sleep(0.1)
    raise AssertionError("no kernel started")


def assert_nothing_left(tmp: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (processes_mentioning(str(tmp)) or list(tmp.iterdir())):
        time.sleep(0.1)
    assert processes_mentioning(str(tmp)) == []
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_grader_leaves_nothing_behind(sig: signal.Signals, tmp_path: Path):
    tmp = tmp_path / "tmp"
    proc = start_grading(tmp, "infinite_loop.ipynb", "--timeout", "120")
    try:
        wait_for_kernel(tmp)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["grade: interrupted; nothing was graded"]
    assert out == ""
    assert_nothing_left(tmp)


def test_interrupted_fork_bomb_leaves_no_process_behind(tmp_path: Path):
    from grader.kernels.launch import LocalKernelLauncher

    if str(LocalKernelLauncher().describe()["process_limit"]).startswith("NOT"):
        pytest.skip("no process limit binds here; a fork bomb is not run")
    tmp = tmp_path / "tmp"
    proc = start_grading(tmp, "fork_bomb.ipynb", "--timeout", "120")
    try:
        wait_for_kernel(tmp)
        before = {p.pid for p in psutil.process_iter()}
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert_nothing_left(tmp)
    # forked copies of the kernel do not name the temp folder: none of the pids seen may survive
    # as a copy of the kernel
    survivors = []
    for pid in before:
        try:
            p = psutil.Process(pid)
            if "ipykernel_launcher" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                survivors.append(p)
        except psutil.Error:
            continue
    assert not [p for p in survivors if str(tmp) in " ".join(p.cmdline())]


def test_killed_grader_takes_its_kernel_with_it(tmp_path: Path):
    tmp = tmp_path / "tmp"
    proc = start_grading(tmp, "infinite_loop.ipynb", "--timeout", "120")
    try:
        wait_for_kernel(tmp)
        proc.kill()  # SIGKILL: no cleanup code runs in the grader; the kernel must still go
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_mentioning(str(tmp)):
        time.sleep(0.1)
    assert processes_mentioning(str(tmp)) == []


def test_a_normal_run_leaves_nothing_behind(tmp_path: Path):
    tmp = tmp_path / "tmp"
    proc = start_grading(tmp, "os_exit.ipynb", "--format", "json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert '"kernel_died": true' in out
    assert_nothing_left(tmp)



@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_grader_exits_at_once_with_its_whole_report_and_nothing_left(fmt: str, tmp_path: Path):
    # `grade` skips the interpreter's teardown once the report is out: the report must still be
    # whole (stdout is a pipe here, so buffered), the exit code right, and every process gone
    tmp = tmp_path / "tmp"
    out_file = tmp_path / "report.out"
    proc = start_grading(tmp, "daemons.ipynb", "--format", fmt, "--fail-under", "100%")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err  # graded, below the bar
    if fmt == "json":
        assert json.loads(out)["status"] == "graded"
    else:
        lines = out.rstrip().splitlines()  # the timing line, then the one-line summary
        assert lines[-2].startswith("Ran in isolation level") and " failed · " in lines[-1]
    assert_nothing_left(tmp)
    tmp2 = tmp_path / "tmp2"
    proc = start_grading(tmp2, "daemons.ipynb", "--format", fmt, "--output", str(out_file))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and out == "", err
    text = out_file.read_text()
    assert json.loads(text)["schema"] == "grader.report/1" if fmt == "json" else "Score:" in text
    assert_nothing_left(tmp2)


def test_a_long_temporary_folder_still_gives_kernels_short_socket_paths(tmp_path, monkeypatch):
    long = tmp_path / ("deep-" * 12)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    r = grade_notebook(ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb", "sigmoid-2-3-1", seed=1)
    assert r.status == "graded" and r.score == r.max_score
    assert list(long.iterdir()) == []  # nothing left behind
