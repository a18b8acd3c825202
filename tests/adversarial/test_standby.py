"""The hard-coding re-run's kernel is started beside the first run's, and never outlives the run."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import nbformat
import psutil
import pytest

import grader.grading.stages as stages_mod
from grader.assignment.load import find_assignment
from grader.grading.grade import grade_notebook
from grader.judging.rerun import rerun_kernel, rerun_possible
from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.standby import AHEAD_NICE, StandbyKernel
from grader.kernels.stop import stop_kernel
from grader.kernels.workspace import Workspace, make_workspace
from grader.submission.notebook import read_submission
from tests.conftest import ASSIGNMENTS, NOTEBOOKS

from .helpers import processes_mentioning

ASSIGNMENT = "sigmoid-2-3-1"


def notebook(tmp_path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "sub.ipynb"
    nbformat.write(nb, path)
    return path


def spy_starts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """Record when kernels are started and when the first run's cells are done."""
    events: list[tuple[str, float]] = []
    real_start, real_execute = LocalKernelLauncher.start, stages_mod.execute

    async def start(self: LocalKernelLauncher, workspace: object) -> object:
        events.append(("start", time.monotonic()))
        return await real_start(self, workspace)

    async def execute(*args: object, **kwargs: object) -> object:
        session = await real_execute(*args, **kwargs)
        events.append(("first run done", time.monotonic()))
        return session

    monkeypatch.setattr(LocalKernelLauncher, "start", start)
    monkeypatch.setattr(stages_mod, "execute", execute)
    return events


def test_the_re_run_kernel_starts_before_the_first_run_is_done(monkeypatch: pytest.MonkeyPatch, private_tmp: Path):
    events = spy_starts(monkeypatch)
    r = grade_notebook(NOTEBOOKS / "feedback" / "hardcoded_variables.ipynb", ASSIGNMENT, seed=3)
    assert r.status == "graded"
    assert "hardcoded" in {code for c in r.checks for code in c.codes}  # the re-run still catches it
    assert [e for e, _ in events] == ["start", "start", "first run done"]
    assert list(private_tmp.iterdir()) == []


def test_the_re_run_kernel_runs_at_a_lower_cpu_priority_than_the_first_runs(monkeypatch: pytest.MonkeyPatch,
                                                                           private_tmp: Path):
    seen: list[tuple[int, int]] = []  # (the workspace's nice increment, the kernel process's nice value)
    real_start = LocalKernelLauncher.start

    async def start(self: LocalKernelLauncher, workspace: Workspace) -> object:
        km = await real_start(self, workspace)
        proc = psutil.Process(km.provisioner.process.pid)  # (its wrapper sets the priority as it begins)
        for _ in range(50):
            await asyncio.sleep(0.1)
            if proc.nice() != 0:
                break
        seen.append((workspace.nice, proc.nice()))
        return km

    monkeypatch.setattr(LocalKernelLauncher, "start", start)
    r = grade_notebook(NOTEBOOKS / "feedback" / "hardcoded_variables.ipynb", ASSIGNMENT, seed=3)
    assert "hardcoded" in {code for c in r.checks for code in c.codes}  # the re-run ran, in that kernel
    assert os.nice(0) == 0
    assert sorted(seen) == [(0, 0), (AHEAD_NICE, AHEAD_NICE)]


def test_a_standby_kernel_no_re_run_needs_is_stopped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    private_tmp: Path):
    # every variable wrong: nothing to re-run, but its kernel was started beside the first
    path = notebook(tmp_path, "y = 0.0", "dL_dW1 = 0.0\ndL_dW2 = 0.0")
    events = spy_starts(monkeypatch)
    r = grade_notebook(path, ASSIGNMENT, seed=3)
    assert r.status == "graded" and r.score == 0
    assert [e for e, _ in events] == ["start", "start", "first run done"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (processes_mentioning(str(private_tmp)) or list(private_tmp.iterdir())):
        time.sleep(0.1)
    assert processes_mentioning(str(private_tmp)) == []
    assert list(private_tmp.iterdir()) == []


def test_a_failure_in_the_first_run_stops_the_standby_kernel(monkeypatch: pytest.MonkeyPatch, private_tmp: Path):
    async def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a grader bug")

    monkeypatch.setattr(stages_mod, "localise", broken)
    r = grade_notebook(ASSIGNMENTS / ASSIGNMENT / "solution.ipynb", ASSIGNMENT, seed=4)
    assert r.status == "error" and "a grader bug" in r.error
    assert processes_mentioning(str(private_tmp)) == []
    assert list(private_tmp.iterdir()) == []


def test_no_standby_where_no_re_run_can_follow(tmp_path: Path):
    async def check() -> None:
        launcher = LocalKernelLauncher()
        # the notebook assigns none of the variables a re-run reads (a kernel started before
        # the notebook was read is discarded at once: test_a_standby_kernel_no_re_run_needs_is_stopped)
        sub = read_submission(notebook(tmp_path, "def sigmoid(a):\n    return a"))
        assert not rerun_possible(sub, find_assignment(ASSIGNMENT))
        # the assignment has no re-run: no kernel is started for one at all
        solution = ASSIGNMENTS / "tanh-softmax-gaussians" / "solution.ipynb"
        no_rerun = find_assignment("tanh-softmax-gaussians")
        assert not rerun_possible(read_submission(solution), no_rerun)
        assert rerun_kernel(solution, no_rerun, launcher) is None

    asyncio.run(check())


def test_a_standby_started_at_a_level_since_given_up_is_not_used(tmp_path: Path, private_tmp: Path):
    async def check() -> None:
        launcher = LocalKernelLauncher()
        if launcher.level == "process":
            pytest.skip("no other level to leave for")
        ws = make_workspace(notebook(tmp_path, "x = 1"))
        standby = StandbyKernel(launcher, ws)
        await asyncio.sleep(0)
        launcher.level = "process"  # as after a remembered level failed and the levels were probed again
        km = await standby.start(ws)
        try:
            assert km.grader_level == "process"
        finally:
            await stop_kernel(km)
            await standby.discard()

    asyncio.run(check())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and processes_mentioning(str(private_tmp)):
        time.sleep(0.1)
    assert processes_mentioning(str(private_tmp)) == []
    assert list(private_tmp.iterdir()) == []
