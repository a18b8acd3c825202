"""The gradebook (real SQLite) and the reports built from it, without kernels."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from grader.batch.classreport import summary
from grader.batch.gradebook import Gradebook, Result
from grader.batch.reports import (
    feedback_html,
    feedback_markdown,
    grades_csv,
    results_jsonl,
)
from grader.batch.run import submission_seed
from grader.errors import GraderError

SECRET = "SECRET-EXPECTED-424242"


def _report(score: float, hidden_detail: dict | None = None, penalty: float | None = None) -> dict:
    checks = [
        {"id": "sigmoid", "target": "sigmoid", "kind": "function", "visibility": "public",
         "status": "pass", "points": 1.0, "max_points": 1.0, "message": "correct", "diagnosis": [],
         "detail": {"expected": [1.0]}},
        {"id": "gradients.W1", "target": "gradients.W1", "kind": "function", "visibility": "hidden",
         "status": "fail" if score < 3 else "pass", "points": 0.0 if score < 3 else 2.0,
         "max_points": 2.0, "message": "wrong on 3 of 3 random inputs",
         "diagnosis": [{"code": "sign_flip", "message": "check the sign"}] if score < 3 else [],
         "detail": hidden_detail or {}},
    ]
    flags = [{"code": "forbidden_import", "target": "torch", "message": "torch is not allowed",
              "points": penalty}] if penalty else []
    return {"schema": "grader.report/1", "assignment": {"id": "a", "version": "1", "spec_sha256": "s"},
            "submission": {"path": "x.ipynb", "sha256": "h"}, "seed": 1, "score": score, "max_score": 3.0,
            "status": "graded", "duration_s": 1.0, "execution": {}, "checks": checks, "flags": flags,
            "error_traceback": "Traceback: grader internals"}


def _result(student: str, sha: str, score: float, status: str = "graded", **kw) -> Result:
    return Result(student, f"Name {student}", f"{student}.ipynb", sha, 7, submission_seed(7, sha), 1.0, 2.5,
                  status, "" if status == "graded" else "why", _report(score, **kw), {"host": "h"}, "0.1.0")


def test_one_current_result_per_submission(tmp_path: Path) -> None:
    book = Gradebook(tmp_path / "gb.sqlite")
    book.record(_result("alice", "h1", 1.0))
    book.record(_result("alice", "h2", 3.0))  # resubmitted
    book.record(_result("bob", "h3", 0.0, status="error"))
    rows = {r.student: r for r in book.current()}
    assert set(rows) == {"alice", "bob"} and rows["alice"].score == 3.0 and rows["alice"].sha256 == "h2"
    assert book.counts() == {"graded": 1, "error": 1}
    assert book.is_current("alice", "h2", "s", 7) and not book.is_current("alice", "h1", "s", 7)
    assert not book.is_current("alice", "h2", "s", 8)  # another batch seed grades again
    book.close()
    db = sqlite3.connect(tmp_path / "gb.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 3  # history is kept
    assert db.execute("SELECT count(*) FROM checks").fetchone()[0] == 6
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself forbids two current runs
        db.execute("UPDATE runs SET current = 1")


def test_not_a_gradebook(tmp_path: Path) -> None:
    with pytest.raises(GraderError, match="no such gradebook"):
        Gradebook(tmp_path / "missing.sqlite", create=False)
    (tmp_path / "junk.sqlite").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(GraderError, match="not a usable gradebook|not a gradebook"):
        Gradebook(tmp_path / "junk.sqlite", create=False)


def test_seed_depends_on_batch_seed_and_content() -> None:
    assert submission_seed(1, "a") == submission_seed(1, "a")
    assert len({submission_seed(1, "a"), submission_seed(2, "a"), submission_seed(1, "b")}) == 3


def _rows(tmp_path: Path, *results: Result):
    book = Gradebook(tmp_path / "gb.sqlite")
    for r in results:
        book.record(r)
    rows = list(book.current())
    book.close()
    return rows


def test_grades_csv_columns_and_penalties(tmp_path: Path) -> None:
    rows = _rows(tmp_path, _result("alice", "h1", 3.0), _result("bob", "h2", -0.5, penalty=-1.5),
                 _result("=cmd|' /C calc'!A0", "h3", 0.0, status="error"))
    table = list(csv.DictReader(io.StringIO(grades_csv(rows))))
    assert list(table[0]) == ["student_id", "name", "total", "max_total", "penalties", "late_penalty", "override",
                              "final", "sigmoid", "gradients.W1", "status", "reason", "submitted", "lateness",
                              "flags", "similar_to", "file", "sha256", "seed"]
    bob = next(r for r in table if r["student_id"] == "bob")
    assert (bob["total"], bob["penalties"], bob["sigmoid"], bob["gradients.W1"]) == ("-0.5", "-1.5", "1", "0")
    assert float(bob["sigmoid"]) + float(bob["gradients.W1"]) + float(bob["penalties"]) == float(bob["total"])
    bob_row = next(r for r in rows if r.student == "bob")
    assert "PENALTY" in feedback_html(bob_row) and "torch" in feedback_html(bob_row)
    assert "PENALTY" in feedback_markdown(bob_row)
    evil = next(r for r in table if r["status"] == "error")
    assert evil["student_id"].startswith("'=")  # never a formula in a spreadsheet


def test_results_jsonl_is_one_report_per_line_without_tracebacks(tmp_path: Path) -> None:
    rows = _rows(tmp_path, _result("alice", "h1", 3.0), _result("bob", "h2", 1.0))
    lines = results_jsonl(rows).splitlines()
    assert len(lines) == 2
    for line in lines:
        d = json.loads(line)
        assert d["schema"] == "grader.report/1" and "error_traceback" not in d


def test_feedback_never_shows_hidden_details(tmp_path: Path) -> None:
    [row] = _rows(tmp_path, _result("alice", "h1", 1.0, hidden_detail={"expected": SECRET, "inputs": SECRET}))
    for text in (feedback_markdown(row), feedback_html(row)):
        assert SECRET not in text and "grader internals" not in text
        assert "wrong on 3 of 3 random inputs" in text  # the feedback itself is there
    assert "<script" not in feedback_html(row)


def test_summary_counts_diagnoses_and_pass_rates(tmp_path: Path) -> None:
    rows = _rows(tmp_path, _result("alice", "h1", 3.0), _result("bob", "h2", 1.0), _result("carol", "h3", 1.0),
                 _result("dave", "h4", 0.0, status="timeout"))
    s = summary(rows)
    assert s["diagnoses"][0] == ("sign_flip", 3, [("gradients.W1", ["bob", "carol", "dave"])])
    assert dict(s["pass_rates"]) == {"sigmoid": 1.0, "gradients.W1": pytest.approx(1 / 3)}
    assert [r.student for r in s["problems"]] == ["dave"]


def test_an_error_row_that_keeps_points_says_why_and_jsonl_keeps_its_status(tmp_path: Path) -> None:
    rows = _rows(tmp_path, _result("alice", "h1", 1.0, status="error"), _result("bob", "h2", 0.0, status="timeout"))
    alice = next(r for r in rows if r.student == "alice")
    for text in (feedback_markdown(alice), feedback_html(alice)):
        assert "1 point kept: the checks graded before the problem (why) count" in text
    assert "points kept" not in feedback_markdown(next(r for r in rows if r.student == "bob"))
    # the report inside says "graded" (its own status): the line says what the batch recorded
    assert [json.loads(x)["status"] for x in results_jsonl(rows).splitlines()] == ["error", "timeout"]
