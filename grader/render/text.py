"""Terminal output: one line per check with a reason, then the total.

Every line starts with the grader's own words (a verdict, `cell N:`, `Score:` …) or with an
indent; text from the notebook comes only after that, made inert, and long lines wrap with
a hanging indent. So nothing a notebook says can pass for a line of the report, open a
markdown fence, or start a CI runner's workflow command.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

from grader.inert import inert
from grader.judging.score import deductions
from grader.render.common import check_name, exception_text, reproduce
from grader.report import Report

_MARK = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "error": ("ERROR", "red"),
         "missing": ("MISSING", "yellow")}
_INDENT = "      "


def _pts(x: float) -> str:
    return f"{round(x, 6):g}"


def render_text(report: Report, color: bool | None = None, width: int = 100) -> str:
    """A human summary of a report: lines at most `width` wide, PASS/FAIL coloured with `color`."""
    # here, not at the top: importing rich costs time every command would pay
    from rich.console import Console
    from rich.markup import escape

    buf = io.StringIO()
    con = Console(file=buf, force_terminal=bool(color), no_color=not color, width=10_000,
                  color_system="standard" if color else None, highlight=False, emoji=False, soft_wrap=True)
    width = max(40, width)

    def line(lead: str, style: str, text: str = "", indent: str = _INDENT) -> None:
        # `lead` is the grader's own word (styled); `text` may hold the notebook's words (inert).
        # A word longer than a line (a path, a long number) is never cut: it stays copyable.
        plain = f"{lead} {text}" if lead and text else lead or text
        wrapped = textwrap.wrap(plain, width=width, subsequent_indent=indent, break_on_hyphens=False,
                                break_long_words=False) or [""]
        first = wrapped[0]
        head = f"[{style}]{escape(lead)}[/]" + escape(first[len(lead):]) if lead and style else escape(first)
        con.print(head)
        for rest in wrapped[1:]:
            con.print(escape(rest))

    a = report.assignment
    source = f" from {inert(a['folder'])}" if a.get("folder") else ""
    line("Notebook:", "bold", inert(report.submission.get("path", "")))
    line("Assignment:", "bold", f"{inert(a.get('id', '?'))} version {inert(a.get('version', '?'))}{source} "
                                f"(seed {report.seed})")
    env = report.environment
    if isinstance(env, dict) and env.get("hash"):
        pkgs = env.get("packages") if isinstance(env.get("packages"), dict) else {}
        versions = ", ".join(f"{inert(k, 60)} {inert(v, 30)}" for k, v in pkgs.items())
        line("Environment:", "bold", f"{inert(env['hash'], 40)} (Python {inert(env.get('python', '?'), 20)}"
                                     f"{'; ' + versions if versions else ''})")
    if report.status == "error":
        stage = f" (while {inert(report.error_stage)})" if report.error_stage else ""
        line(f"ERROR could not finish grading{stage}:", "red", inert(report.error or "unknown error"))
    ex = report.execution
    for e in ex.cell_errors:
        by_cell_limit = e.ename == "Timeout" and "submission's time limit" not in e.evalue
        limit = cell_limit_text(ex.limits) if by_cell_limit else ""
        line(f"cell {e.cell}:", "dim", exception_text(e.ename, e.evalue, limit=160) + (f" [{limit}]" if limit else ""))
    if ex.kernel_died:
        line("Note:", "yellow", f"the kernel died; skipped cell(s) {', '.join(map(str, ex.skipped_cells))} "
                                "and graded the rest")
    elif ex.timed_out:
        line("Note:", "yellow", "a time limit was reached; what ran was graded")
    for event in ex.limit_events:
        line("Limit:", "yellow", inert(event))
    if ex.output_truncated:
        line("Note:", "dim", "some cell output was truncated")
    for c in report.checks:
        word, style = _MARK.get(c.status, (c.status.upper(), ""))
        vis = " (hidden)" if c.visibility == "hidden" else ""
        line(word, style, f"{inert(check_name(c), 120)}{vis}  {_pts(c.points)}/{_pts(c.max_points)}  {inert(c.message)}")
        for d in c.diagnosis[1:] if c.status != "pass" else c.diagnosis:
            line(_INDENT + inert(d.code, 60) + ":", "dim", inert(d.message), indent=_INDENT + "  ")
        for call in reproduce(c):
            line(_INDENT + "try:", "cyan", inert(call.removeprefix("try: ")), indent=_INDENT + "  ")
    charged = deductions(report)
    for f, taken in charged:
        line("PENALTY", "red", f"{inert(f.code, 60)}: {inert(f.target, 120)}  -{_pts(taken)}  {inert(f.message)}")
    penalised = {id(f) for f, _ in charged}
    for f in report.flags:
        if id(f) not in penalised:
            line(f"{inert(f.code, 60)}:", "yellow", f"{inert(f.target, 120)}: {inert(f.message)}")
    line("Score:", "bold", f"{_pts(report.score)}/{_pts(report.max_score)}"
                           + (" (incomplete: grading stopped early)" if report.status == "error" else "")
                           + partial_note(report))
    level = ex.isolation.get("level")
    if level:
        line("Ran", "dim", f"in isolation level {inert(level, 40)}, {report.duration_s:.1f} s")
    passed, failed = summary_counts(report)
    tail = f" · {_pts(report.score)}/{_pts(report.max_score)}" + (" (partial)" if report.selection else "")
    con.print(f"[green]{passed} passed[/], [red]{failed} failed[/]{escape(tail)}")
    return buf.getvalue()


def summary_counts(report: Report) -> tuple[int, int]:
    """How many checks passed, and how many did not (failed, errors, missing)."""
    passed = sum(c.status == "pass" for c in report.checks)
    return passed, len(report.checks) - passed


def partial_note(report: Report) -> str:
    """` (partial: ...)` for a report of some of the checks only; "" for a full grading."""
    sel = report.selection
    if not sel:
        return ""
    what = "public checks only" if sel.get("public_only") and not sel.get("checks") else \
        "only " + ", ".join(inert(x, 60) for x in sel.get("checks") or []) + \
        (" (public checks)" if sel.get("public_only") else "")
    full = sel.get("full_max_score")
    return f" (partial: {what}; the full grading is out of {_pts(full)})" if full is not None else f" (partial: {what})"


_SOURCES = {"option": "set by --timeout", "spec": "the assignment's policy.cell_timeout",
            "measured": "measured from the assignment's solution", "default": "the default"}


def cell_limit_text(limits: Any) -> str:
    """The cell limit of a report's `execution.limits` and where it came from, in words."""
    seconds = limits.get("cell_timeout_s") if isinstance(limits, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return ""
    source = _SOURCES.get(str(limits.get("cell_timeout_source")))
    return f"cell limit {seconds:g} s" + (f", {source}" if source else "")
