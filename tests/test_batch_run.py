"""The one place a batch grades a submission: hangs, foreign assignment copies, changed notebooks."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grader.batch.run as run
from grader.batch.run import grade_batch, grade_files, grade_remote
from grader.kernels.launch import LocalKernelLauncher
from tests.batch_support import ASSIGNMENT, SOLUTION, make_flat, notebook_bytes
from tests.conftest import process_alive


class _HangingLauncher:
    """A kernel launcher whose kernel never starts (kernel starts are outside the time limits)."""

    async def start(self, workspace: Any) -> Any:
        await asyncio.sleep(3600)

    def describe(self) -> dict[str, object]:
        return LocalKernelLauncher().describe()


def test_a_hang_is_a_timeout_row(monkeypatch) -> None:
    monkeypatch.setattr(run, "HANG_GRACE_S", 2.0)
    status, reason, rep = asyncio.run(grade_files(
        {"hw.ipynb": SOLUTION.read_bytes()}, "hw.ipynb", ASSIGNMENT, 1, 5.0, 1.0, _HangingLauncher(), "alice/hw.ipynb"))
    assert status == "timeout" and reason.startswith("hung: no result within 3 s")
    assert rep["status"] == "error" and rep["submission"]["path"] == "alice/hw.ipynb" and rep["seed"] == 1


def test_a_worker_with_another_spec_gives_an_error_not_a_grade() -> None:
    payload = {"files": {"hw.ipynb": notebook_bytes("correct", "x")}, "graded_as": "hw.ipynb",
               "assignment": ASSIGNMENT, "spec_sha256": "0" * 64, "seed": 3, "cell_timeout": 30.0,
               "total_timeout": 120.0, "isolation": None, "relpath": "hw.ipynb"}
    out = grade_remote(payload)
    assert out["status"] == "error" and "differs" in out["reason"]
    assert out["environment"]["worker_pid"] > 0


def test_a_changed_notebook_is_graded_again(tmp_path: Path) -> None:
    src = make_flat(tmp_path / "src", [("alice", "correct"), ("bob", "sign")])
    db = tmp_path / "gb.sqlite"
    first = grade_batch(src, ASSIGNMENT, db, jobs=2, cell_timeout=30, total_timeout=120)
    assert (first.graded_now, first.skipped) == (2, 0)
    (src / "bob.ipynb").write_bytes(notebook_bytes("correct", "bob"))  # bob fixed his notebook
    again = grade_batch(src, ASSIGNMENT, db, jobs=2, cell_timeout=30, total_timeout=120)
    assert (again.graded_now, again.skipped, again.counts) == (1, 1, {"graded": 2})


def test_a_batch_grades_the_same_with_its_reference_values_from_a_child_or_its_own(
        tmp_path: Path, monkeypatch) -> None:
    import grader.grading.stages as stages
    from grader.batch.gradebook import Gradebook
    from grader.pool import child as pool_worker
    from grader.pool.store import pool_key

    src = make_flat(tmp_path / "src", [("alice", "correct"), ("bob", "sign"), ("carol", "scaled")])
    planned: list[bool] = []
    real_plan = stages._plan

    def spy(asg, seed, checks, pool=None, given=None):  # type: ignore[no-untyped-def]
        # an entry for this very seed and assignment version (one _plan would not throw away)
        planned.append(given is not None and given.seed == seed and given.key == pool_key(asg))
        return real_plan(asg, seed, checks, pool, given)

    monkeypatch.setattr(stages, "_plan", spy)

    def scores(db: Path) -> dict[str, Any]:
        book = Gradebook(db)
        try:
            return {r.student: (r.status, r.report["score"], r.report["seed"],
                                [(c["id"], c["status"]) for c in r.report["checks"]]) for r in book.current()}
        finally:
            book.close()

    def batch(db: str, plan_ahead: bool) -> list[bool]:
        planned.clear()
        grade_batch(src, ASSIGNMENT, tmp_path / db, jobs=2, seed=5, cell_timeout=30, total_timeout=120,
                    plan_ahead=plan_ahead)
        return planned

    children: list[int] = []
    real_close = pool_worker.Planner.close

    async def close(self):  # type: ignore[no-untyped-def]
        if self._process is not None:
            children.append(self._process.pid)
        await real_close(self)

    monkeypatch.setattr(pool_worker.Planner, "close", close)
    assert batch("ahead.sqlite", True) == [True, True, True]  # every submission's values from the child
    assert len(children) == 1 and not process_alive(children[0])  # and the child ended with the batch
    assert batch("here.sqlite", False) == [False, False, False]
    # a child that cannot start: each submission computes its own
    monkeypatch.setattr(pool_worker, "_command", lambda mode, asg: (["/nonexistent/python"], {}))
    assert batch("failed.sqlite", True) == [False, False, False]
    assert scores(tmp_path / "ahead.sqlite") == scores(tmp_path / "here.sqlite") == scores(tmp_path / "failed.sqlite")
