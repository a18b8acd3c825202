"""Reports from a gradebook: grades.csv for the LMS, results.jsonl, per-student feedback (markdown
and HTML) and report.html, one self-contained page for the instructor.

Everything a notebook wrote is escaped for the format it lands in; feedback files show what
the student may see (hidden checks' inputs and expected values are never in a report).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from grader.batch.gradebook import Row
from grader.inert import inert
from grader.render.common import deductions, feedback, headline, pts, verdict
from grader.render.markdown import render_markdown
from grader.report import report_from_dict

# The first columns of grades.csv, in order; then one column per check (its points), then these.
LEADING = ["student_id", "name", "total", "max_total", "penalties"]
TRAILING = ["status", "reason", "file", "sha256", "seed"]
TOP_DIAGNOSES = 15
SLOWEST = 10


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


def grades_csv(rows: list[Row]) -> str:
    """grades.csv: a row per student: id, name, total, maximum, penalties, each check's points, status."""
    ids = check_ids(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LEADING + ids + TRAILING)
    for r in rows:
        points = {c["id"]: pts(c["points"]) for c in r.report.get("checks") or []}
        w.writerow([_csv_cell(r.student), _csv_cell(r.name), pts(r.score), pts(r.max_score), pts(r.penalties),
                    *(points.get(i, "") for i in ids),
                    r.status, _csv_cell(r.reason), _csv_cell(r.path), r.sha256, r.seed])
    return buf.getvalue()


def results_jsonl(rows: list[Row]) -> str:
    """results.jsonl: one grader.report/1 per line, with the student's id beside it."""
    out = []
    for r in rows:
        rep = dict(r.report)
        rep.pop("error_traceback", None)  # (for maintainers: in the gradebook, not in exports)
        out.append(json.dumps({"student": r.student, "status": r.status, "reason": r.reason, **rep},
                              sort_keys=False))
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


def feedback_markdown(r: Row) -> str:
    """The feedback file a student gets back, in markdown."""
    return render_markdown(_student_view(r))


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.n{text-align:right}
.pass{color:#1a7f37}.fail,.error,.timeout{color:#b42318}.missing{color:#8a6d00}
img{max-width:100%}code{background:#f5f5f5;padding:0 .2em}
"""
_CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">")


def _e(text: object, limit: int = 2000) -> str:
    return html.escape(inert(text, limit), quote=True)


def _page(title: str, body: list[str]) -> str:
    return "\n".join(["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">", _CSP,
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
                      f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>", *body,
                      "</body></html>", ""])


def _table(head: list[str], rows: list[list[str]], table_id: str, numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are already escaped."""
    out = [f"<table id=\"{table_id}\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td class=\"n\">{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def feedback_html(r: Row) -> str:
    """The feedback file a student gets back, as a standalone HTML page."""
    rep = _student_view(r)
    a = rep.assignment
    body = [f"<h1>Grade: {_e(headline(rep))}</h1>",
            f"<p>Assignment <code>{_e(a.get('id', '?'))}</code> version {_e(a.get('version', '?'))}; "
            f"notebook <code>{_e(rep.submission.get('path', ''))}</code>; seed {rep.seed}.</p>"]
    if rep.status == "error":
        body.append(f"<p class=\"error\">Could not finish grading: {_e(rep.error or 'unknown error')}</p>")
    ex = rep.execution
    notes = [f"cell {e.cell}: {_e(e.ename, 80)}: {_e(e.evalue, 300)}" for e in ex.cell_errors]
    notes += [f"limit: {_e(e)}" for e in ex.limit_events]
    if notes:
        body.append("<h2>While running the notebook</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>")
    rows = [[f"<span class=\"{_e(c.status)}\">{_e(verdict(c))}</span>",
             _e(c.target) + (" (hidden)" if c.visibility == "hidden" else ""),
             f"{pts(c.points)}/{pts(c.max_points)}",
             "<br>".join(_e(line) for line in feedback(c))] for c in rep.checks]
    rows += [["PENALTY", f"{_e(f.code, 60)}: {_e(f.target, 120)}", f"&minus;{pts(taken)}", _e(f.message)]
             for f, taken in deductions(rep)]
    if rows:
        body.append(_table(["", "Check", "Points", "Feedback"], rows, "checks", {2}))
    return _page(f"Feedback: {r.student}", body)


def write_feedback(rows: list[Row], folder: Path) -> None:
    """feedback/<student>.md and .html for every student."""
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for r in rows:
        name = safe_name(r.student, taken)
        (folder / f"{name}.md").write_text(feedback_markdown(r), encoding="utf-8")
        (folder / f"{name}.html").write_text(feedback_html(r), encoding="utf-8")


def summary(rows: list[Row]) -> dict[str, Any]:
    """What the class report shows, computed once (also for tests and scripts)."""
    graded = [r for r in rows if r.status == "graded"]
    passing: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    diag: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in rows:
        checks = r.report.get("checks") or []
        for c in checks:
            if r.status == "graded":
                passing[c["id"]][0] += c["status"] == "pass"
                passing[c["id"]][1] += 1
            if c["status"] != "pass":
                for code in dict.fromkeys(d["code"] for d in c.get("diagnosis") or []):
                    diag[(code, c["target"])].append(r.student)
        for f in r.report.get("flags") or []:
            diag[(f["code"], f.get("target") or "")].append(r.student)
    common = sorted(diag.items(), key=lambda kv: (-len(set(kv[1])), kv[0]))[:TOP_DIAGNOSES]
    scores = [r.score for r in rows]
    return {
        "count": len(rows),
        "status": dict(Counter(r.status for r in rows)),
        "max_score": max((r.max_score for r in rows), default=0.0),
        "scores": scores,
        "mean": statistics.fmean(scores) if scores else 0.0,
        "median": statistics.median(scores) if scores else 0.0,
        "pass_rates": [(cid, p / n if n else 0.0) for cid, (p, n) in passing.items()],
        "diagnoses": [(code, target, sorted(set(students))) for (code, target), students in common],
        "problems": [r for r in rows if r.status != "graded"],
        "slowest": sorted(graded, key=lambda r: -r.duration_s)[:SLOWEST],
        "assignment": next((r.report.get("assignment") for r in rows), {}) or {},
    }


def report_html(rows: list[Row]) -> str:
    """report.html: the class at a glance, in one page with its plots inside (works offline)."""
    from grader.batch import plots

    s = summary(rows)
    a = s["assignment"]
    st = s["status"]
    body = [f"<h1>Class report: {_e(a.get('id', '?'))}</h1>",
            f"<p>{s['count']} submissions: {st.get('graded', 0)} graded, {st.get('error', 0)} errors, "
            f"{st.get('timeout', 0)} timeouts. Mean score {s['mean']:.2f}, median {pts(s['median'])} "
            f"of {pts(s['max_score'])}.</p>",
            "<h2>Scores</h2>",
            f"<img id=\"histogram\" alt=\"Histogram of scores\" src=\"{plots.histogram(s['scores'], s['max_score'])}\">"]
    if s["pass_rates"]:
        body += ["<h2>Pass rate per check</h2>",
                 f"<img id=\"pass-rates\" alt=\"Pass rate per check\" src=\"{plots.pass_rates(s['pass_rates'])}\">",
                 _table(["Check", "Passing"], [[_e(c), f"{100 * r:.0f}%"] for c, r in s["pass_rates"]],
                        "pass-rate-table", {1})]
    body.append("<h2>Most common diagnoses</h2>")
    if s["diagnoses"]:
        labels = [(f"{code} ({target})" if target else code, len(students)) for code, target, students in s["diagnoses"]]
        body += [f"<img id=\"diagnoses\" alt=\"Most common diagnoses\" src=\"{plots.diagnoses(labels)}\">",
                 _table(["Diagnosis", "Check", "Students", "Who"],
                        [[_e(code), _e(target), str(len(students)), _e(", ".join(students), 4000)]
                         for code, target, students in s["diagnoses"]], "diagnosis-table", {2})]
    else:
        body.append("<p>No diagnoses: every check passed.</p>")
    body.append("<h2>Errors and timeouts</h2>")
    body.append(_table(["Student", "Status", "Reason"],
                       [[_e(r.student), f"<span class=\"{r.status}\">{r.status}</span>", _e(r.reason, 500)]
                        for r in s["problems"]], "problem-table") if s["problems"] else "<p>None.</p>")
    body += ["<h2>Slowest submissions</h2>",
             _table(["Student", "Seconds", "Score"],
                    [[_e(r.student), f"{r.duration_s:.1f}", f"{pts(r.score)}/{pts(r.max_score)}"]
                     for r in s["slowest"]], "slowest-table", {1, 2}),
             "<h2>All submissions</h2>",
             _table(["Student", "Name", "Score", "Status", "Notebook"],
                    [[_e(r.student), _e(r.name), f"{pts(r.score)}/{pts(r.max_score)}", r.status, _e(r.path, 300)]
                     for r in rows], "students-table", {2})]
    return _page(f"Class report: {a.get('id', '?')}", body)


def write_reports(rows: list[Row], out: Path) -> list[Path]:
    """Every report into `out`: grades.csv, results.jsonl, feedback/, report.html."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("grades.csv", grades_csv(rows)), ("results.jsonl", results_jsonl(rows)),
                       ("report.html", report_html(rows))):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    write_feedback(rows, out / "feedback")
    written.append(out / "feedback")
    return written
