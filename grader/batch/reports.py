"""Reports from a gradebook: grades.csv (every step to each final grade), results.jsonl,
similarity.csv and per-student feedback (markdown and HTML); report.html is classreport.py.

Everything a notebook wrote is escaped for the format it lands in; feedback files show what
the student may see (hidden checks' inputs and expected values are never in a report).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

from grader.batch.classview import ClassView, view_of
from grader.batch.gradebook import Row
from grader.batch.pages import esc, page, table
from grader.course.grades import Grade
from grader.course.late import show_time
from grader.course.store import points_text
from grader.inert import inert, md
from grader.render.common import deductions, feedback, headline, pts, verdict
from grader.render.markdown import render_markdown
from grader.report import report_from_dict

# The first columns of grades.csv, in order; then one column per check (its points), then these.
LEADING = ["student_id", "name", "total", "max_total", "penalties", "late_penalty", "override", "final"]
TRAILING = ["status", "reason", "submitted", "lateness", "flags", "similar_to", "file", "sha256", "seed"]


def check_ids(rows: list[Row]) -> list[str]:
    """Every check id, in the order the assignment lists them."""
    seen: dict[str, None] = {}
    for r in rows:
        for c in r.report.get("checks") or []:
            seen.setdefault(c["id"], None)
    return list(seen)


def _csv_cell(value: object) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet; names come from students.
    text = inert(value, 500)
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") or (text[:1] == "-" and not _number(text)) else text


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _view(rows: list[Row], view: ClassView | None) -> ClassView:
    return view if view is not None else view_of(rows)


def override_text(g: Grade) -> str:
    """Every active override of a grade, in one line ("" if none)."""
    return "; ".join(o.describe() for o in g.overrides)


def similar_text(view: ClassView, student: str) -> str:
    """The students whose code is alike, with the kind and score, in one line."""
    return "; ".join(f"{p.b if p.a == student else p.a} ({p.kind} {p.score:.2f})" for p in view.similar(student))


def grades_csv(rows: list[Row], view: ClassView | None = None) -> str:
    """grades.csv: a row per student: the automatic total, each step to the final grade, each
    check's points, status; a roster student with no submission is a `missing` row."""
    view = _view(rows, view)
    ids = check_ids(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LEADING + ids + TRAILING)
    for g in view.grades:
        r = g.row
        points = {c["id"]: pts(c["points"]) for c in (r.report.get("checks") or [] if r else [])}
        late = g.late
        w.writerow([_csv_cell(g.student), _csv_cell(g.name), pts(g.auto), pts(g.max_score),
                    pts(r.penalties if r else 0.0), pts(-late.penalty) if late.penalty else "0",
                    _csv_cell(override_text(g)), "EX" if g.final is None else pts(g.final),
                    *(points.get(i, "") for i in ids),
                    g.status, _csv_cell(g.reason), show_time(late.submitted) if late.submitted else "",
                    _csv_cell(late.note or late.state), _csv_cell("; ".join(g.flags)),
                    _csv_cell(similar_text(view, g.student)), _csv_cell(r.path if r else ""),
                    r.sha256 if r else "", r.seed if r else ""])
    return buf.getvalue()


def course_fields(view: ClassView, g: Grade) -> dict[str, Any]:
    """What the course adds to a student's result: lateness, overrides, final grade, flags, similarity."""
    return {"final": g.final, "excused": g.excused, "late": g.late.to_dict(), "flags": g.flags,
            "overrides": [vars(o) for o in g.overrides], "notes": g.notes,
            "similar": [vars(p) for p in view.similar(g.student)]}


def results_jsonl(rows: list[Row], view: ClassView | None = None) -> str:
    """results.jsonl: one grader.report/1 per line with the student's id, the batch's status
    (graded, error, timeout: never the report's own) and the course's fields; a roster student
    with no submission is a line with status `missing` and no report."""
    view = _view(rows, view)
    out = []
    for g in view.grades:
        rep = dict(g.row.report) if g.row is not None else {"score": 0.0, "max_score": g.max_score}
        rep.pop("error_traceback", None)  # (for maintainers: in the gradebook, not in exports)
        out.append(json.dumps({"student": g.student, **rep, "status": g.status, "reason": g.reason,
                               "course": course_fields(view, g)}, sort_keys=False))
    return "".join(line + "\n" for line in out)


def safe_name(student: str, taken: set[str]) -> str:
    """A file name for a student's feedback: their id, made safe, unique in the folder."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", student).strip("._") or "student"
    base = base[:80]
    name = base
    if name.lower() in taken:
        name = f"{base}-{hashlib.sha256(student.encode()).hexdigest()[:8]}"
    taken.add(name.lower())
    return name


def _student_view(r: Row) -> Any:
    rep = dict(r.report)
    rep.pop("error_traceback", None)
    report = report_from_dict(rep)
    for c in report.checks:
        if c.visibility == "hidden":  # never shown, whatever a report holds
            c.detail = {}
    return report


def kept_points(g: Grade) -> str:
    """Why an error or timeout row still holds points ("" when it holds none)."""
    if g.row is None or g.status == "graded" or g.auto <= 0:
        return ""
    return (f"{points_text(g.auto)} kept: the checks graded before the problem ({g.reason or g.status}) "
            "count; the rest could not be graded")


def grade_lines_md(g: Grade) -> list[str]:
    """The course's part of the feedback in markdown: each step to the final grade."""
    out = ["", f"### Final grade: {'excused' if g.final is None else f'{pts(g.final)}/{pts(g.max_score)}'}", ""]
    # (the points are the grader's own words: no escaping needed)
    out += [f"- {md(label, 500)}" + (f": {points}" if points else "") for label, points in g.lines()]
    if kept_points(g):
        out.append(f"- {md(kept_points(g), 600)}")
    return out + [""]


def feedback_markdown(r: Row | None, grade: Grade | None = None) -> str:
    """The feedback file a student gets back, in markdown."""
    g = grade or _view([r], None).grades[0]
    if r is None:
        return f"### No submission from {md(g.student, 120)}\n" + "\n".join(grade_lines_md(g))
    return render_markdown(_student_view(r)) + "\n".join(grade_lines_md(g))


def grade_lines_html(g: Grade) -> list[str]:
    """The course's part of the feedback page: each step to the final grade."""
    rows = [[esc(label, 600), esc(points, 40)] for label, points in g.lines()]
    if kept_points(g):
        rows.append([esc(kept_points(g), 600), ""])
    title = "excused" if g.final is None else f"{pts(g.final)}/{pts(g.max_score)}"
    return [f"<h2>Final grade: {esc(title)}</h2>", table(["Step", "Points"], rows, "final-grade", {1})]


def feedback_html(r: Row | None, grade: Grade | None = None) -> str:
    """The feedback file a student gets back, as a standalone HTML page."""
    g = grade or _view([r], None).grades[0]
    if r is None:
        return page(f"Feedback: {g.student}", [f"<h1>No submission from {esc(g.student)}</h1>",
                                                *grade_lines_html(g)])
    rep = _student_view(r)
    a = rep.assignment
    body = [f"<h1>Grade: {esc(headline(rep))}</h1>",
            f"<p>Assignment <code>{esc(a.get('id', '?'))}</code> version {esc(a.get('version', '?'))}; "
            f"notebook <code>{esc(rep.submission.get('path', ''))}</code>; seed {rep.seed}.</p>"]
    if rep.status == "error":
        body.append(f"<p class=\"error\">Could not finish grading: {esc(rep.error or 'unknown error')}</p>")
    ex = rep.execution
    notes = [f"cell {e.cell}: {esc(e.ename, 80)}: {esc(e.evalue, 300)}" for e in ex.cell_errors]
    notes += [f"limit: {esc(e)}" for e in ex.limit_events]
    if notes:
        body.append("<h2>While running the notebook</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    rows = [[f"<span class=\"{esc(c.status)}\">{esc(verdict(c))}</span>",
             esc(c.target) + (" (hidden)" if c.visibility == "hidden" else ""),
             f"{pts(c.points)}/{pts(c.max_points)}",
             "<br>".join(esc(line) for line in feedback(c))] for c in rep.checks]
    rows += [["PENALTY", f"{esc(f.code, 60)}: {esc(f.target, 120)}", f"&minus;{pts(taken)}", esc(f.message)]
             for f, taken in deductions(rep)]
    if rows:
        body.append(table(["", "Check", "Points", "Feedback"], rows, "checks", {2}))
    return page(f"Feedback: {r.student}", body + grade_lines_html(g))


def feedback_names(view: ClassView) -> dict[str, str]:
    """student -> the base name of their feedback files (their id, made safe and unique)."""
    taken: set[str] = set()
    return {g.student: safe_name(g.student, taken) for g in view.grades}


def write_feedback(view: ClassView, folder: Path) -> dict[str, str]:
    """feedback/<student>.md and .html for every student (a missing one included)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = feedback_names(view)
    for g in view.grades:
        (folder / f"{names[g.student]}.md").write_text(feedback_markdown(g.row, g), encoding="utf-8")
        (folder / f"{names[g.student]}.html").write_text(feedback_html(g.row, g), encoding="utf-8")
    return names


def similarity_csv(view: ClassView) -> str:
    """similarity.csv: one row per pair of students whose code is alike, most alike first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student_a", "name_a", "student_b", "name_b", "kind", "score", "shared_fingerprints"])
    names = {g.student: g.name for g in view.grades}
    for p in view.pairs:
        w.writerow([_csv_cell(p.a), _csv_cell(names.get(p.a, "")), _csv_cell(p.b), _csv_cell(names.get(p.b, "")),
                    p.kind, f"{p.score:.3f}", p.shared])
    return buf.getvalue()


def write_reports(rows: list[Row], out: Path, view: ClassView | None = None) -> list[Path]:
    """Every report into `out`: grades.csv, results.jsonl, similarity.csv, feedback/, report.html."""
    from grader.batch.classreport import report_html

    view = _view(rows, view)
    out.mkdir(parents=True, exist_ok=True)
    names = write_feedback(view, out / "feedback")
    written = []
    for name, text in (("grades.csv", grades_csv(rows, view)), ("results.jsonl", results_jsonl(rows, view)),
                       ("similarity.csv", similarity_csv(view)), ("report.html", report_html(view, names))):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return [*written, out / "feedback"]
