"""A markdown summary: score, a table of checks with points, penalties and the feedback.

For a GitHub job summary, a pull-request comment or a feedback file. Every string that can
hold the notebook's words goes through `md` (inert, then every markdown character escaped),
so nothing the notebook says can close the table, open HTML, link or format.
"""

from __future__ import annotations

from grader.inert import md
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

_ICON = {"pass": "✅", "fail": "❌", "error": "⛔", "missing": "❔"}


def render_markdown(report: Report) -> str:
    """The report as a GitHub-flavoured markdown summary."""
    a = report.assignment
    out = [f"### Grade: {headline(report)} for {md(a.get('id', '?'), 120)}", ""]
    out.append(f"Notebook {md(report.submission.get('path', ''), 300)}, assignment "
               f"{md(a.get('id', '?'), 120)} version {md(a.get('version', '?'), 40)}, seed {report.seed}.")
    out.append("")
    if report.status == "error":
        stage = f" (while {md(report.error_stage, 200)})" if report.error_stage else ""
        out += [f"**Could not finish grading{stage}:** {md(report.error or 'unknown error')}", ""]
    ex = report.execution
    notes = [f"cell {e.cell}: {exception_text(e.ename, e.evalue, md)}" for e in ex.cell_errors]
    if ex.kernel_died:
        notes.append("the kernel died; skipped cell(s) " + ", ".join(map(str, ex.skipped_cells))
                     + " and graded the rest")
    elif ex.timed_out:
        notes.append("a time limit was reached; what ran was graded")
    notes += [f"limit: {md(e)}" for e in ex.limit_events]
    if notes:
        out += ["**While running the notebook:**", "", *(f"- {n}" for n in notes), ""]
    charged = deductions(report)
    if report.checks or charged:
        out += ["| | Check | Points | Feedback |", "|---|---|---:|---|"]
        for c in report.checks:
            hidden = " (hidden)" if c.visibility == "hidden" else ""
            text = "<br>".join(md(x) for x in feedback(c) if x)
            out.append(f"| {_ICON.get(c.status, '')} {md(verdict(c), 20)} | {md(check_name(c), 120)}{hidden} "
                       f"| {pts(c.points)}/{pts(c.max_points)} | {text} |")
        for f, taken in charged:
            out.append(f"| ➖ PENALTY | {md(f.code, 60)}: {md(f.target, 120)} | −{pts(taken)} | {md(f.message)} |")
        out.append(f"| | **Score** | **{pts(report.score)}/{pts(report.max_score)}** | |")
        out.append("")
    penalised = {id(f) for f, _ in charged}
    others = [f for f in report.flags if id(f) not in penalised]
    if others:
        out += ["**Also noted:**", "", *(f"- {md(f.code, 60)}: {md(f.target, 120)}: {md(f.message)}" for f in others), ""]
    level = ex.isolation.get("level")
    if level:
        out += [f"Ran in isolation level {md(level, 40)}, {report.duration_s:.1f} s.", ""]
    return "\n".join(out) + "\n"
