"""Gradescope's autograder `results.json`: one test per check, one per penalty.

Follows Gradescope's specification: top-level `score` (the report's score), `output`,
`tests[]` with `name`, `score`, `max_score`, `status` ("passed"/"failed"), `output` and
`visibility`. Hidden checks are `after_published` unless told otherwise
(`hidden_visibility`). Penalties are tests with a negative score and no maximum, so the
tests' scores add up to the score.
"""

from __future__ import annotations

import json
from typing import Any

from grader.inert import inert
from grader.render.common import (
    check_name,
    deductions,
    exception_text,
    feedback,
    headline,
    pts,
    verdict,
)
from grader.report import Report

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")


def render_gradescope(report: Report, hidden_visibility: str = "after_published") -> str:
    """The report as Gradescope's results.json."""
    if hidden_visibility not in VISIBILITIES:
        raise ValueError(f"hidden_visibility must be one of {', '.join(VISIBILITIES)}")
    tests: list[dict[str, Any]] = []
    for n, c in enumerate(report.checks, start=1):
        hidden = c.visibility == "hidden"
        tests.append({
            "name": f"{inert(check_name(c), 120)}{' (hidden)' if hidden else ''}",
            "number": str(n),
            "score": round(c.points, 6),
            "max_score": round(c.max_points, 6),
            "status": "passed" if c.status == "pass" else "failed",
            "output": "\n".join([f"{verdict(c)} {pts(c.points)}/{pts(c.max_points)}",
                                 *(inert(x) for x in feedback(c) if x)]),
            "output_format": "text",
            "visibility": hidden_visibility if hidden else "visible",
        })
    for f, taken in deductions(report):
        tests.append({
            "name": f"Penalty: {inert(f.code, 60)} ({inert(f.target, 120)})",
            "number": str(len(tests) + 1),
            "score": -round(taken, 6),
            "max_score": 0,
            "status": "failed",
            "output": inert(f.message),
            "output_format": "text",
            "visibility": "visible",
        })
    lines = [f"Score: {headline(report)}"]
    if report.status == "error":
        stage = f" (while {inert(report.error_stage, 200)})" if report.error_stage else ""
        lines.append(f"Could not finish grading{stage}: {inert(report.error or 'unknown error')}")
    lines += [f"cell {e.cell}: {exception_text(e.ename, e.evalue)}" for e in report.execution.cell_errors]
    charged = {id(f) for f, _ in deductions(report)}
    lines += [f"{inert(f.code, 60)}: {inert(f.target, 120)}: {inert(f.message)}"
              for f in report.flags if id(f) not in charged]
    results = {
        "score": round(report.score, 6),
        "execution_time": round(report.duration_s),
        "output": "\n".join(lines),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"assignment": inert(report.assignment.get("id", "?"), 120),
                       "seed": report.seed, "max_score": round(report.max_score, 6), "status": inert(report.status, 20)},
    }
    return json.dumps(results, indent=2, allow_nan=False) + "\n"
