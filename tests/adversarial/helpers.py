"""Shared helpers of the adversarial suite: grading attack notebooks and judging their reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from grader.kernels.launch import LocalKernelLauncher
from grader.report import Report

ROOT = Path(__file__).resolve().parents[2]
ADVERSARIAL = ROOT / "tests" / "notebooks" / "adversarial"
ASSIGNMENT = "sigmoid-2-3-1"
GRADE = [str(Path(sys.executable).with_name("grade"))]


def auto_isolation() -> dict[str, Any]:
    """What the default launcher gets on this machine."""
    launcher = LocalKernelLauncher()
    d = launcher.describe()
    return d


def passed(report: Report) -> set[str]:
    """Targets of the checks that passed."""
    return {c.target for c in report.checks if c.status == "pass"}


def assert_no_unearned_credit(report: Report, earned: set[str]) -> None:
    """Only the targets the notebook really earns pass, and the score is theirs alone."""
    unearned = passed(report) - earned
    assert not unearned, f"unearned credit for {sorted(unearned)}"
    assert report.score <= sum(c.max_points for c in report.checks if c.target in earned) + 1e-9


def cell_error(report: Report, cell: int) -> tuple[str, str]:
    """(ename, evalue) the report records for a 1-based cell."""
    for e in report.execution.cell_errors:
        if e.cell == cell:
            return e.ename, e.evalue
    raise AssertionError(f"no error recorded for cell {cell}: {report.execution.cell_errors}")


def run_grade(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the `grade` command; (result, peak resident memory of the grader process in bytes)."""
    proc = subprocess.Popen([*GRADE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    peak = 0
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            peak = max(peak, me.memory_info().rss)  # the grader only: its kernels are other processes
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), peak


def report_json(path: Path) -> dict[str, Any]:
    """A JSON report written with -o."""
    return json.loads(path.read_text())


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment plus some variables."""
    env = dict(os.environ)
    env.update(extra)
    return env


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line contains `text`."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(text in a for a in p.info["cmdline"] or ()):
                out.append(p)
        except psutil.Error:
            continue
    return out
