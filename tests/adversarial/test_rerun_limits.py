"""The hard-coding re-run never runs again a cell that met a limit in the first run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

import grader.judging.rerun as rerun_mod
from grader.grading.grade import grade_notebook
from grader.judging.rerun import not_again
from grader.run.record import NOT_RUN, CellRun, ExecutionRecord
from grader.run.session import Session
from tests.conftest import ASSIGNMENTS

ASSIGNMENT = "sigmoid-2-3-1"
SOLUTION = ASSIGNMENTS / ASSIGNMENT / "solution.ipynb"


def solution_with(tmp_path: Path, cell: int | None, source: str) -> Path:
    """The solution notebook with one cell's source replaced (None: a cell appended)."""
    nb = nbformat.read(SOLUTION, as_version=4)
    if cell is None:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    else:
        nb.cells[cell].source = source
    path = tmp_path / "sub.ipynb"
    nbformat.write(nb, path)
    return path


def spy_reruns(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[int, str], list[CellRun]]]:
    """Record, for each re-run, the cells it was told to leave out and what happened to each cell."""
    seen: list[tuple[dict[int, str], list[CellRun]]] = []
    real = rerun_mod.execute

    async def execute(*args: Any, **kwargs: Any) -> Session:
        session = await real(*args, **kwargs)
        seen.append((dict(kwargs.get("skip") or {}), list(session.record.cells)))
        return session

    monkeypatch.setattr(rerun_mod, "execute", execute)
    return seen


def test_cells_that_met_a_limit_are_the_ones_left_out():
    record = ExecutionRecord(cells=[
        CellRun(1, "ok"), CellRun(2, "error", "NameError"), CellRun(3, "timeout", "Timeout"),
        CellRun(4, "died", "KernelDied"), CellRun(5, "skipped", "TimeLimit"), CellRun(6, "ok"),
    ])
    skip = not_again(record)
    assert sorted(skip) == [3, 4, 5]
    assert "time" in skip[3] and "kernel" in skip[4]
    assert not_again(None) == {} and not_again(ExecutionRecord()) == {}


def test_an_endless_loop_is_not_run_again_and_the_values_still_follow_the_sample(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    seen = spy_reruns(monkeypatch)
    r = grade_notebook(solution_with(tmp_path, None, "while True:\n    pass"), ASSIGNMENT, seed=5,
                       cell_timeout=2)
    loop = 5  # the appended cell's index
    first = {c.cell: c.ename for c in r.execution.cell_errors}
    assert first.get(loop + 1) == "Timeout"
    assert len(seen) == 1
    skip, cells = seen[0]
    assert list(skip) == [loop]
    by_index = {c.index: c for c in cells}
    assert by_index[loop].status == "skipped" and by_index[loop].ename == NOT_RUN
    assert all(c.status == "ok" for c in cells if c.index != loop)
    # the variables were computed before the loop: the re-run still follows them, nothing is flagged
    assert not any("hardcoded" in c.codes for c in r.checks)
    assert {c.id: c.status for c in r.checks}["y"] == "pass"


def test_a_value_only_a_timed_out_cell_assigns_is_one_the_re_run_cannot_verify(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    seen = spy_reruns(monkeypatch)
    cell = ("def forward(x, W1, W2):\n    return sigmoid(W2 @ sigmoid(W1 @ x))\n\n\n"
            "y = forward(x0, W1, W2)\nwhile True:\n    pass")
    r = grade_notebook(solution_with(tmp_path, 3, cell), ASSIGNMENT, seed=5, cell_timeout=2)
    assert len(seen) == 1 and list(seen[0][0]) == [3]
    y = {c.id: c for c in r.checks}["y"]
    # as when that cell timed out in the re-run: y could not be shown to follow the fresh sample
    assert "hardcoded" in y.codes
    assert "cell 4 was not run in the re-run" in " ".join(d.message for d in y.diagnosis)
