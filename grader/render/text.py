"""Terminal output: one line per check with a reason, then the total."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from ..report import Report

_MARK = {"pass": "[green]PASS[/]", "fail": "[red]FAIL[/]", "error": "[red]ERROR[/]", "missing": "[yellow]MISSING[/]"}


def _pts(x: float) -> str:
    return f"{x:g}"


def render_text(report: Report, color: bool | None = None, width: int = 100) -> str:
    """A human summary of a report."""
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=bool(color), no_color=not color, width=width, highlight=False, soft_wrap=True)
    a = report.assignment
    con.print(f"[bold]{escape(str(report.submission.get('path', '')))}[/] — assignment {escape(a.get('id', '?'))} (seed {report.seed})")
    if report.status == "error":
        con.print(f"[red]could not grade:[/] {escape(report.error or 'unknown error')}")
        return buf.getvalue()
    ex = report.execution
    for e in ex.cell_errors:
        con.print(f"[dim]cell {e.cell}: {escape(e.ename)}: {escape(e.evalue[:160])}[/]")
    if ex.kernel_died:
        con.print(f"[yellow]the kernel died; skipped cell(s) {', '.join(map(str, ex.skipped_cells))} and graded the rest[/]")
    elif ex.timed_out:
        con.print("[yellow]a time limit was reached; what ran was graded[/]")
    for event in ex.limit_events:
        con.print(f"[yellow]{escape(event)}[/]")
    if ex.output_truncated:
        con.print("[dim]some cell output was truncated[/]")
    for c in report.checks:
        vis = " [dim](hidden)[/]" if c.visibility == "hidden" else ""
        con.print(f"{_MARK.get(c.status, c.status)} {escape(c.target)}{vis}  {_pts(c.points)}/{_pts(c.max_points)}  {escape(c.message)}")
        for d in c.diagnosis[1:] if c.status != "pass" else c.diagnosis:
            con.print(f"      [dim]{escape(d.code)}:[/] {escape(d.message)}")
    for f in report.flags:
        con.print(f"[yellow]{escape(f.code)}[/] {escape(f.target)}: {escape(f.message)}")
    con.print(f"[bold]Score: {_pts(report.score)}/{_pts(report.max_score)}[/]")
    level = ex.isolation.get("level")
    if level:
        con.print(f"[dim]ran in isolation level {escape(str(level))}, {report.duration_s:.1f} s[/]")
    return buf.getvalue()
