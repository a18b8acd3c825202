"""GitHub Actions: one annotation per failed check, penalty or grading error, then the text report.

The markdown summary for `$GITHUB_STEP_SUMMARY` is `render_markdown` (the CLI appends it
when that variable is set). Workflow commands are the grader's own: every notebook-derived
value is first made inert (one line, no `::`), then escaped as the runner unescapes it
(`%`, CR and LF in messages; also `:` and `,` in properties), so it can neither end the
command nor start another one.
"""

from __future__ import annotations

import os
from pathlib import Path

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
from grader.render.text import render_text
from grader.report import Report


def _data(text: object, limit: int = 2000) -> str:
    return inert(text, limit).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: object, limit: int = 200) -> str:
    return _data(text, limit).replace(":", "%3A").replace(",", "%2C")


def _command(kind: str, message: str, title: str, file: str | None) -> str:
    props = ([f"file={_prop(file, 300)}"] if file else []) + [f"title={_prop(title)}"]
    return f"::{kind} {','.join(props)}::{_data(message)}"


def _relative(path: str) -> str | None:
    """The notebook's path as GitHub matches annotations: relative to the workspace, when inside it."""
    if not path:
        return None
    base = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except (ValueError, OSError):
        return path


def annotations(report: Report) -> list[str]:
    """`::error` per failed check, penalty and grading failure; `::notice` for what costs nothing."""
    file = _relative(report.submission.get("path", ""))
    out: list[str] = []
    if report.status == "error":
        out.append(_command("error", report.error or "unknown error", "Grading failed", file))
    for c in report.checks:
        hidden = " (hidden)" if c.visibility == "hidden" else ""
        title = f"{verdict(c)} {inert(check_name(c), 120)}{hidden} {pts(c.points)}/{pts(c.max_points)}"
        text = " | ".join(inert(x) for x in feedback(c) if x)
        if c.status != "pass":
            out.append(_command("error", text, title, file))
        elif c.diagnosis:
            out.append(_command("notice", text, title, file))
    charged = deductions(report)
    for f, taken in charged:
        out.append(_command("error", f.message, f"PENALTY {inert(f.code, 60)} -{pts(taken)}", file))
    penalised = {id(f) for f, _ in charged}
    for f in report.flags:
        if id(f) not in penalised:
            out.append(_command("notice", f"{inert(f.target, 120)}: {inert(f.message)}", inert(f.code, 60), file))
    for e in report.execution.cell_errors:
        out.append(_command("notice", exception_text(e.ename, e.evalue), f"cell {e.cell} raised", file))
    out.append(_command("notice", f"Score {headline(report)}", "Grade", file))
    return out


def render_github(report: Report) -> str:
    """Annotations, then the text report, for the job log (the summary is render_markdown's)."""
    return "\n".join(annotations(report)) + "\n" + render_text(report)
