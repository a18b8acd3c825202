"""The grader's own time and memory stay bounded whatever the notebook holds.

A notebook that reassigns a large variable in cell after cell, or holds one enormous cell of
trivial statements, costs the grader what one copy costs, and its grading ends within the
submission's time limit. Peak memory is the grader process's own (its kernels are other
processes), measured while `grade` runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat

from tests.adversarial.helpers import ASSIGNMENT, ROOT, run_grade

SOLUTION = ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"
MB = 2**20


def _solution_with(cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    return nb


def test_a_large_variable_reassigned_in_many_cells_is_kept_once(tmp_path: Path):
    # `y` is a graded variable: each of these cells binds it to 8 MB (the largest array an
    # answer may be), then the last binds it to something that is no answer at all
    cells = [f"y = np.full((1000, 1000), {i}.0)" for i in range(80)] + ["y = 'done'"]
    path = tmp_path / "reassigned.ipynb"
    nbformat.write(_solution_with(cells), path)
    out = tmp_path / "r.json"
    p, peak = run_grade([str(path), "--assignment", ASSIGNMENT, "--format", "json", "-o", str(out)], timeout=300)
    assert p.returncode in (0, 1), p.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "graded"
    # the answer it held after the solution's own cell is the one graded
    assert next(c for c in report["checks"] if c["target"] == "y")["status"] == "pass"
    assert peak < 600 * MB, peak / MB


def test_an_enormous_cell_of_trivial_statements_costs_seconds_not_minutes(tmp_path: Path):
    big = "".join(f"v{i} = {i}\n" for i in range(250_000))  # 3 MB of code in one cell
    path = tmp_path / "enormous.ipynb"
    nbformat.write(_solution_with([big]), path)
    out = tmp_path / "r.json"
    started = time.monotonic()
    p, peak = run_grade([str(path), "--assignment", ASSIGNMENT, "--format", "json", "-o", str(out),
                         "--total-timeout", "60"], timeout=300)
    took = time.monotonic() - started
    assert p.returncode in (0, 1), p.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "graded" and report["score"] == report["max_score"]
    assert took < 90, took
    assert peak < 800 * MB, peak / MB
