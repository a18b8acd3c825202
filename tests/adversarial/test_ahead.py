"""Kernels started ahead of the submission they run: fresh, each for one submission, never left over."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import nbformat
import pytest

from grader.batch.run import grade_batch
from grader.kernels.ahead import KernelsAhead, empty_workspace
from grader.kernels.warm import WarmKernelLauncher
from grader.kernels.workspace import Workspace, make_workspace
from tests.batch_support import ASSIGNMENT, SOLUTION

from .helpers import processes_mentioning


def test_a_workspace_comes_with_the_kernel_started_for_it_and_the_next_one_starts(private_tmp: Path):
    started: list[Workspace] = []

    async def start(ws: Workspace) -> object:
        started.append(ws)
        return f"kernel of {ws.root.name}"

    async def check() -> None:
        ahead = KernelsAhead(start, 1)  # type: ignore[arg-type]
        ws = ahead.take()
        assert ws is None  # none was ready: the first submission starts its own ...
        await asyncio.sleep(0)
        assert len(started) == 1  # ... and the next one's is on its way
        ws = ahead.take()
        assert ws is started[0]
        assert await ahead.started(ws) == f"kernel of {ws.root.name}"  # type: ignore[misc]
        assert ahead.started(ws) is None  # handed over once only
        await asyncio.sleep(0)
        assert len(started) == 2
        ws.cleanup()
        await ahead.close()
        assert ahead.take() is None  # closed: none made any more

    asyncio.run(check())
    assert list(private_tmp.iterdir()) == []  # the one no submission took was removed


def test_a_launcher_keeps_none_ahead_unless_asked(tmp_path: Path, private_tmp: Path):
    async def check() -> None:
        launcher = WarmKernelLauncher()
        try:
            (tmp_path / "a.ipynb").write_text("{}")
            ws = make_workspace(tmp_path / "a.ipynb", [], into=empty_workspace(launcher))
            assert launcher.take_workspace() is None
            assert [p.name for p in ws.work.iterdir()] == ["a.ipynb"]
            ws.cleanup()
        finally:
            launcher.close()

    asyncio.run(check())


# Each notebook checks, in its first cell, that its kernel holds nothing of another submission:
# its folder has its own files only (given to its user), no module, variable or file of the
# notebook graded before it in the same slot.
CHECK = """import os, sys, glob
mine = sorted(os.listdir('.'))
assert mine == [NAME], mine
assert all(os.stat(f).st_uid == os.getuid() for f in mine)
assert 'left_by_a_submission' not in globals()
assert not glob.glob('/tmp/left-by-*') and not glob.glob(os.path.expanduser('~/left-by-*'))
assert 'LEFT_BY' not in os.environ
"""
LEAVE = """left_by_a_submission = 1
import os, json
os.environ['LEFT_BY'] = NAME
open('/tmp/left-by-' + NAME, 'w').write('x')
open(os.path.expanduser('~/left-by-' + NAME), 'w').write('x')
"""


def test_a_kernel_started_ahead_holds_nothing_of_an_earlier_submission(tmp_path: Path, private_tmp: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    taken: list[bool] = []
    real = KernelsAhead.started

    def started(self: KernelsAhead, ws: Workspace) -> object:
        task = real(self, ws)
        taken.append(task is not None)
        return task

    monkeypatch.setattr(KernelsAhead, "started", started)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("s1", "s2", "s3"):
        nb = nbformat.read(SOLUTION, as_version=4)
        code = f"NAME = {name + '.ipynb'!r}\n"
        nb.cells[1:1] = [nbformat.v4.new_code_cell(code + CHECK), nbformat.v4.new_code_cell(code + LEAVE)]
        nbformat.write(nb, src / f"{name}.ipynb")
    db = tmp_path / "gb.sqlite"
    s = grade_batch(src, ASSIGNMENT, db, jobs=1, seed=2, cell_timeout=20)
    assert s.counts == {"graded": 3}
    assert any(taken)  # later submissions ran in kernels started before they came
    with sqlite3.connect(db) as con:
        reports = [json.loads(r) for (r,) in con.execute("select report from runs where current = 1")]
    assert len(reports) == 3
    for rep in reports:
        assert rep["execution"]["cell_errors"] == [], rep["execution"]["cell_errors"]
        assert rep["score"] == rep["max_score"]
    assert processes_mentioning(str(private_tmp)) == []
    assert [p.name for p in private_tmp.iterdir()] == []
