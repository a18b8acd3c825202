"""What every output format says the same way: verdict words, points, a check's feedback."""

from __future__ import annotations

from ..report import CheckResult, Report
from ..score import deductions

VERDICT = {"pass": "PASS", "fail": "FAIL", "error": "ERROR", "missing": "MISSING"}


def pts(x: float) -> str:
    """Points as people write them: 1, 5.5, 0.25."""
    return f"{round(x, 6):g}"


def verdict(c: CheckResult) -> str:
    return VERDICT.get(c.status, c.status.upper())


def feedback(c: CheckResult) -> list[str]:
    """The check's message, then the diagnoses it does not already say (raw: escape for the format)."""
    extra = c.diagnosis[1:] if c.status != "pass" else c.diagnosis
    return [c.message, *(f"{d.code}: {d.message}" for d in extra)]


def headline(report: Report) -> str:
    """`5.5/11`, or `0/11 (incomplete: grading stopped early)` for a report with status error."""
    s = f"{pts(report.score)}/{pts(report.max_score)}"
    return s + (" (incomplete: grading stopped early)" if report.status == "error" else "")


__all__ = ["VERDICT", "deductions", "feedback", "headline", "pts", "verdict"]
