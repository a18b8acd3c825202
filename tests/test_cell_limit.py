"""The default cell limit measured from the assignment's own solution, and what overrides it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader import grade_notebook
from grader.assignment.load import find_assignment
from grader.grading.limits import (
    cell_limit,
    limit_from,
    measure_solution,
    measured_limit,
    measurement_path,
)
from grader.options import CELL_TIMEOUT
from grader.render.text import render_text

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "sigmoid-2-3-1"
LOOP = ROOT / "tests" / "notebooks" / "adversarial" / "infinite_loop.ipynb"


def _pretend_measured(asg, slowest_s: float) -> None:
    """A measurement on disk, as `grade validate` leaves it (without grading the solution)."""
    path = measurement_path(asg)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"slowest_cell_s": slowest_s}))


def test_the_limit_is_ten_times_the_slowest_cell_between_a_floor_and_the_old_default():
    assert limit_from(0.01) == 5.0
    assert limit_from(1.2) == 12.0
    assert limit_from(100.0) == CELL_TIMEOUT


def test_measuring_the_solution_stores_a_limit():
    asg = find_assignment(ASSIGNMENT)
    assert measured_limit(asg) is None and cell_limit(asg) == (CELL_TIMEOUT, "default")
    slowest, limit = measure_solution(asg, grade_notebook)
    assert 0 < slowest < 3 and limit == limit_from(slowest)
    assert measured_limit(asg) == limit
    assert cell_limit(asg) == (limit, "measured")
    assert cell_limit(asg, 12.5) == (12.5, "option")


def test_a_changed_solution_is_measured_again(tmp_path: Path):
    folder = tmp_path / ASSIGNMENT
    shutil.copytree(ROOT / "assignments" / ASSIGNMENT, folder)
    asg = find_assignment(str(folder))
    _pretend_measured(asg, 0.5)
    assert cell_limit(asg) == (5.0, "measured")
    solution = folder / "solution.ipynb"
    solution.write_text(solution.read_text().replace("\n}", "\n }", 1))  # other bytes, same notebook
    assert cell_limit(asg) == (CELL_TIMEOUT, "default")


def test_an_endless_loop_meets_the_measured_limit():
    asg = find_assignment(ASSIGNMENT)
    _pretend_measured(asg, 0.1)  # a fast solution: the floor, 5 s
    started = time.monotonic()
    r = grade_notebook(LOOP, ASSIGNMENT, seed=1)
    took = time.monotonic() - started
    ex = r.execution
    assert ex.timed_out and ex.timed_out_cells
    assert ex.limits["cell_timeout_s"] == 5.0 and ex.limits["cell_timeout_source"] == "measured"
    assert took < 20, took  # far below the 30 s of the fixed default
    text = render_text(r, color=False, width=400)
    assert "cell limit 5 s, measured from the assignment's solution" in text


def test_the_timeout_option_overrides_the_measurement(tmp_path: Path):
    asg = find_assignment(ASSIGNMENT)
    _pretend_measured(asg, 2.0)  # 20 s
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "grader.cli", str(LOOP), "-a", ASSIGNMENT, "--timeout", "2",
                        "--format", "json", "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode in (0, 1), r.stderr
    limits = json.loads(out.read_text())["execution"]["limits"]
    assert limits["cell_timeout_s"] == 2 and limits["cell_timeout_source"] == "option"


def test_the_specs_cell_timeout_overrides_the_measurement(tmp_path: Path):
    folder = tmp_path / ASSIGNMENT
    shutil.copytree(ROOT / "assignments" / ASSIGNMENT, folder)
    toml = folder / "assignment.toml"
    text = toml.read_text()
    if "[policy]" in text:
        text = text.replace("[policy]", "[policy]\ncell_timeout = 3", 1)
    else:
        text += "\n[policy]\ncell_timeout = 3\n"
    toml.write_text(text)
    asg = find_assignment(str(folder))
    _pretend_measured(asg, 2.0)  # 20 s
    assert cell_limit(asg) == (3.0, "spec")
    assert cell_limit(asg, 4) == (4, "option")
    r = grade_notebook(LOOP, str(folder), seed=1)
    assert r.execution.limits["cell_timeout_s"] == 3 and r.execution.limits["cell_timeout_source"] == "spec"
    assert r.execution.timed_out


@pytest.mark.parametrize("source, words", [("default", "the default"), ("option", "set by --timeout")])
def test_the_text_report_names_the_limit_a_cell_met(source, words):
    from grader.report import CellError, Execution, Report

    r = Report(assignment={"id": ASSIGNMENT}, submission={"path": "x.ipynb"}, seed=1)
    r.execution = Execution(cell_errors=[CellError(2, "Timeout", "the cell ran longer than 30 s; it was interrupted")],
                            timed_out=True, timed_out_cells=[2],
                            limits={"cell_timeout_s": 30.0, "cell_timeout_source": source})
    assert f"[cell limit 30 s, {words}]" in render_text(r, color=False, width=400)


def test_a_batch_without_timeout_stops_the_loop_at_the_measured_limit(tmp_path: Path):
    from grader.batch.gradebook import Gradebook
    from grader.batch.run import grade_batch
    from tests.batch_support import make_flat

    _pretend_measured(find_assignment(ASSIGNMENT), 0.1)  # 5 s
    src = make_flat(tmp_path / "src", [("alice", "correct"), ("lou", "loop")])
    db = tmp_path / "gb.sqlite"
    started = time.monotonic()
    s = grade_batch(src, ASSIGNMENT, db, jobs=2, seed=1, total_timeout=120)
    assert time.monotonic() - started < 25
    assert s.counts == {"graded": 1, "timeout": 1}
    book = Gradebook(db, create=False)
    try:
        rows = {r.student: r for r in book.current()}
    finally:
        book.close()
    assert "longer than 5 s" in rows["lou"].reason
    limits = rows["lou"].report["execution"]["limits"]
    assert limits["cell_timeout_s"] == 5.0 and limits["cell_timeout_source"] == "measured"
