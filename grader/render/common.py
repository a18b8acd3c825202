"""What every output format says the same way: verdict words, points, a check's feedback."""

from __future__ import annotations

from collections.abc import Callable

from grader.inert import inert
from grader.judging.score import deductions
from grader.report import CheckResult, Report

VERDICT = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "missing": "MISSING"}


def pts(x: float) -> str:
    """Points as people write them: 1, 5.5, 0.25."""
    return f"{round(x, 6):g}"


def verdict(c: CheckResult) -> str:
    return VERDICT.get(c.status, c.status.upper())


def check_name(c: CheckResult) -> str:
    """How the check is named: its label, else its target (reports from before labels; raw)."""
    return c.label or c.target


def feedback(c: CheckResult) -> list[str]:
    """The check's message, then the diagnoses it does not already say (raw: escape for the format)."""
    extra = c.diagnosis[1:] if c.status != "pass" else c.diagnosis
    return [c.message, *(f"{d.code}: {d.message}" for d in extra), *reproduce(c)]


def reproduce(c: CheckResult) -> list[str]:
    """`try: sigmoid(np.array([...]))` for a failed public check that has a call to reproduce it (raw)."""
    call = c.detail.get("call") if isinstance(c.detail, dict) else None
    if c.status == "pass" or c.visibility != "public" or not isinstance(call, str):
        return []
    return [f"try: {call}"]


def exception_text(ename: str, evalue: str, esc: Callable[[object, int], str] = inert, limit: int = 300) -> str:
    """`ZeroDivisionError: division by zero`, or just `NotImplementedError` for an empty message."""
    value = esc(evalue, limit)
    return f"{esc(ename, 80)}: {value}" if value else esc(ename, 80)


def headline(report: Report) -> str:
    """`5.5/11`, or `0/11 (incomplete: grading stopped early)` for a report with status error."""
    s = f"{pts(report.score)}/{pts(report.max_score)}"
    s += " (incomplete: grading stopped early)" if report.status == "error" else ""
    return s + (" (partial: some checks only)" if report.selection else "")


__all__ = ["VERDICT", "deductions", "exception_text", "feedback", "check_name", "headline", "pts", "reproduce", "verdict"]
