"""The benchmark's Otter rows: the wall-clock limit per run, the Otter course, the table, the
skipped rows when a tool is missing (and, where Otter is installed, one real `otter run`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from bench import grade_speed, otter_course
from bench.grade_speed import Measure, Run, run_once, table
from bench.nbgrader_course import REFERENCE, TESTS
from bench.submissions import SOLUTION
from tests.conftest import process_alive

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_past_its_limit_is_stopped_with_everything_under_it(tmp_path):
    pids = tmp_path / "pids"
    # a child spinning on the CPU and a grandchild asleep, under a shell that waits for both
    script = (f"python3 -c 'while True: pass' & echo $! >> {pids}; "
              f"sh -c 'sleep 300 & echo $! >> {pids}; wait' & wait")
    t0 = time.monotonic()
    run = run_once(["sh", "-c", script], ok_codes=(0,), limit=3)
    found = [int(p) for p in pids.read_text().split()] if pids.exists() else []
    try:
        assert time.monotonic() - t0 < 30
        assert run.timed_out == 1 and run.ok == 0
        assert run.wall >= 3
        # the orphaned spinner's CPU time is counted although nobody waits for it
        assert run.cpu > 0.1
        assert len(found) == 2
        deadline = time.monotonic() + 10
        while any(process_alive(p) for p in found) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(process_alive(p) for p in found)
    finally:
        for pid in found:  # a failure here must not leave a spinning process behind
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_run_within_its_limit_is_not_timed_out():
    run = run_once(["sh", "-c", "exit 1"], ok_codes=(0,), limit=30)
    assert (run.ok, run.timed_out) == (0, 0)
    run = run_once(["sh", "-c", "exit 0"], ok_codes=(0,), limit=30)
    assert (run.ok, run.timed_out) == (1, 0)
    assert run.wall < 30


def test_the_table_compares_classes_with_otter_and_says_what_timed_out():
    floor = Measure("floor", 1, [Run(2.0, 1.0, 60, 1)])
    ours = Measure("ours all 20", 20, [Run(30.0, 10.0, 200, 20)])
    nbg = Measure("nbgrader all 20", 20, [Run(60.0, 50.0, 120, 19)])
    otter = Measure("otter all 20", 20, [Run(90.0, 80.0, 150, 18, 1)])
    missing = Measure("otter one", 1, skipped="not installed")
    lines = table([floor, ours, nbg, otter, missing], floor, nbg, otter).splitlines()
    assert lines[0].split("|")[-2].strip() == "vs Otter (20)"
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]}
    assert row["ours all 20"][-2:] == ["2.00× as fast", "3.00× as fast"]
    assert row["otter all 20 (18/20 graded, 1 timed out)"][-1] == "1.00× as fast"
    assert row["nbgrader all 20 (19/20 graded)"][-1] == "1.50× as fast"
    assert row["floor"][-1] == ""  # one notebook is not compared with a class
    assert row["otter one"][2] == "skipped: not installed"


def test_without_otter_or_nbgrader_their_rows_are_skipped_with_a_note(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "grade_speed.py"), "--rounds", "0",
                        "--class-rounds", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    otter_rows = [line for line in r.stdout.splitlines() if line.startswith("| Otter")]
    assert len(otter_rows) == 2
    assert "skipped: not installed" in otter_rows[0] and "--install-others" in otter_rows[0]
    assert "skipped: not run (--class-rounds 0)" in otter_rows[1] or "not installed" in otter_rows[1]
    assert "Traceback" not in r.stderr


def test_a_run_limit_that_is_not_positive_is_refused_in_one_line():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "grade_speed.py"), "--run-limit", "0"], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--run-limit must be a positive number" in r.stderr and "Traceback" not in r.stderr


def test_the_help_names_the_otter_options():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "grade_speed.py"), "--help"], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert "--run-limit" in r.stdout and "Otter" in r.stdout


def test_the_master_notebook_has_one_question_per_nbgrader_test():
    nb = otter_course.master_notebook(SOLUTION)
    assert nb.cells[0].cell_type == "raw" and nb.cells[0].source.startswith("# ASSIGNMENT CONFIG")
    solution = nbformat.read(SOLUTION, as_version=4)
    assert [c.source for c in nb.cells[1:1 + len(solution.cells)]] == [c.source for c in solution.cells]
    questions = [c.source for c in nb.cells if c.source.startswith("# BEGIN QUESTION")]
    assert questions == [f"# BEGIN QUESTION\nname: {n}\npoints: {p}" for n, p, _ in TESTS]
    tests = [c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith(REFERENCE)]
    assert tests == [REFERENCE + source for _, _, source in TESTS]
    # the same content gives the same file, so the built autograder is found again in the cache
    assert nbformat.writes(nb) == nbformat.writes(otter_course.master_notebook(SOLUTION))


def _released() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('import otter\ngrader = otter.Notebook("sigmoid.ipynb")'),
                nbformat.v4.new_markdown_cell("text"),
                *[nbformat.v4.new_code_cell(f'grader.check("{n}")') for n, _, _ in TESTS]]
    nb.metadata["otter"] = {"assignment_name": "sigmoid"}
    return nb


def test_a_submission_is_put_into_the_released_notebooks_frame():
    student = nbformat.read(SOLUTION, as_version=4)
    out = otter_course.as_submission(student, _released())
    assert "otter.Notebook(" in out.cells[0].source
    assert [c.source for c in out.cells[1:-len(TESTS)]] == [c.source for c in student.cells]
    assert [c.source for c in out.cells[-len(TESTS):]] == [f'grader.check("{n}")' for n, _, _ in TESTS]
    assert out.metadata["otter"] == {"assignment_name": "sigmoid"}
    assert "otter" not in student.metadata  # the benchmark's notebook itself is left alone


def test_a_released_notebook_without_its_checks_is_refused():
    released = _released()
    released.cells = released.cells[:-1]
    with pytest.raises(RuntimeError, match="released Otter notebook"):
        otter_course.as_submission(nbformat.read(SOLUTION, as_version=4), released)


def test_otter_version_of_a_folder_without_otter_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="not installed"):
        otter_course.otter_version(tmp_path)


@pytest.mark.skipif(not grade_speed.installed(grade_speed.OTTER_VENV),
                    reason="Otter is not installed (bench/grade_speed.py --install-others)")
def test_otter_grades_the_solution_fully_and_a_wrong_gradient_not(tmp_path):
    import json

    from bench.nbgrader_course import environment
    from bench.submissions import write_submissions

    venv = grade_speed.OTTER_VENV
    subs = write_submissions(tmp_path / "subs")
    wrong = [p for p in subs if p.stem == "wrong-01-sign"]
    zipf, paths = otter_course.make_class(tmp_path / "class", venv, SOLUTION, wrong, tmp_path / "cache")
    names = {name for name, _, _ in TESTS}
    scores = []
    for path in paths:
        run = run_once(otter_course.run_command(venv, zipf, path), env=environment(venv), ok_codes=(0,),
                       limit=600)
        assert run.ok == 1 and otter_course.graded(path)
        results = json.loads((path.parent / "results.json").read_text())
        # beside one row per question, Otter adds a summary row ("Public Tests") without a score
        scores.append({t["name"]: t["score"] for t in results["tests"] if t["name"] in names})
    assert scores[0] == {"sigmoid": 2, "forward": 2, "gradients": 4, "variables": 3}
    assert scores[1]["gradients"] == 0 and scores[1]["variables"] == 0 and scores[1]["sigmoid"] == 2
    # built once: a second class from the same master reuses the cached autograder
    again, _ = otter_course.make_class(tmp_path / "class2", venv, SOLUTION, wrong, tmp_path / "cache")
    assert again == zipf
