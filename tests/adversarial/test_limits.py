"""Limits are on by default, reported in every result, and a submission that hits one still gets a report."""

from __future__ import annotations

from pathlib import Path

from grader.run.client import MAX_CELL_OUTPUT_BYTES
from tests.conftest import graded

from .helpers import ADVERSARIAL, ASSIGNMENT, ROOT, cell_error, passed, report_json, run_grade

BOTH = {"sigmoid", "sigmoid_derivative"}


def test_limits_are_reported_in_every_result():
    r = graded(ROOT / "assignments" / ASSIGNMENT / "solution.ipynb", ASSIGNMENT)
    lim = r.execution.limits
    assert lim["cell_timeout_s"] == 30 and lim["total_timeout_s"] == 300
    assert lim["memory_mb"] == 2048 and lim["processes"] > 0 and lim["file_size_mb"] > 0
    assert lim["output_per_cell_kb"] == MAX_CELL_OUTPUT_BYTES // 1024
    iso = r.execution.isolation
    assert {"level", "network", "filesystem", "memory_limit", "process_limit", "environment"} <= set(iso)
    d = r.to_dict()["execution"]
    assert {"limits", "isolation", "limit_events", "ran_cells", "timed_out_cells", "total_timed_out"} <= set(d)


def test_submission_time_limit_still_gives_a_full_report():
    r = graded(ADVERSARIAL / "slow_cells.ipynb", ASSIGNMENT, total_timeout=5)
    e = r.execution
    assert e.total_timed_out and e.timed_out
    assert e.ran_cells[:2] == [2, 3]
    assert e.timed_out_cells == [4]
    assert {5, 6} <= set(e.skipped_cells)
    assert "time limit" in cell_error(r, 4)[1]
    assert passed(r) == {"sigmoid"}
    # every check is there, and the ones whose code never ran say so
    assert len(r.checks) == 8
    deriv = next(c for c in r.checks if c.target == "sigmoid_derivative")
    assert deriv.status == "error" and deriv.codes == ["timeout"]
    assert "cell 6, which defines it, did not run" in deriv.message
    assert next(c for c in r.checks if c.target == "forward").status == "missing"  # never defined at all


def test_file_size_limit_stops_a_disk_filler():
    r = graded(ADVERSARIAL / "big_file.ipynb", ASSIGNMENT)
    ename, evalue = cell_error(r, 3)
    assert ename == "OSError" and "too large" in evalue.lower()
    assert passed(r) == BOTH


def test_a_gigabyte_of_output_is_truncated_and_grader_memory_stays_flat(tmp_path: Path):
    base_out, huge_out = tmp_path / "base.json", tmp_path / "huge.json"
    base, base_peak = run_grade([str(ROOT / "assignments" / ASSIGNMENT / "solution.ipynb"),
                                 "--format", "json", "-o", str(base_out)])
    huge, huge_peak = run_grade([str(ADVERSARIAL / "huge_output.ipynb"), "--format", "json",
                                 "-o", str(huge_out), "--timeout", "60"])
    assert base.returncode == 0 and huge.returncode == 0, huge.stderr
    d = report_json(huge_out)
    e = d["execution"]
    assert e["output_truncated"]
    assert any("output limit" in ev for ev in e["limit_events"])
    assert {c["target"] for c in d["checks"] if c["status"] == "pass"} == BOTH
    # 1.2 GB went through; the grader holds at most a few capped messages at a time
    assert huge_peak < base_peak + 400 * 2**20, (base_peak, huge_peak)
