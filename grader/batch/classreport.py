"""report.html: the class at a glance, for the instructor, in one page that works offline.

Diagnoses are grouped by diagnosis, then by check, with how many students and who: the
specific ones (sign_flip, variant:…, hardcoded, scaled, forbidden_import, unstable…) first,
the generic ones that only say a check failed (missing, exception, wrong…) last, so a
class's real misconceptions are never pushed out by them.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from grader.batch.classview import ClassView, view_of
from grader.batch.gradebook import Row
from grader.batch.pages import esc, page, table
from grader.course.late import show_time
from grader.render.common import pts

# Codes that say a check failed without saying how: ranked after every specific diagnosis.
GENERIC = {"missing", "exception", "wrong", "timeout", "kernel_died", "shape_mismatch", "error"}
SLOWEST = 10


def _diagnoses(rows: list[Row]) -> dict[str, dict[str, list[str]]]:
    """code -> check -> students, from every check (passing ones too: `unstable` sits there) and
    every flag (penalties such as forbidden_import)."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for c in r.report.get("checks") or []:
            for code in dict.fromkeys(d["code"] for d in c.get("diagnosis") or []):
                found[code][c["id"]].append(r.student)
        for f in r.report.get("flags") or []:
            found[f["code"]][f.get("target") or ""].append(r.student)
    return found


def ranked_diagnoses(rows: list[Row]) -> list[tuple[str, int, list[tuple[str, list[str]]]]]:
    """(code, students, [(check, students)]), specific codes first, each by how many students."""
    out = []
    for code, checks in _diagnoses(rows).items():
        per_check = sorted(((cid, sorted(set(s))) for cid, s in checks.items()), key=lambda kv: (-len(kv[1]), kv[0]))
        students = len({s for _, ss in per_check for s in ss})
        out.append((code, students, per_check))
    return sorted(out, key=lambda x: (x[0] in GENERIC, -x[1], x[0]))


def summary(rows: list[Row] | ClassView) -> dict[str, Any]:
    """What the class report shows, computed once (also for tests and scripts)."""
    view = rows if isinstance(rows, ClassView) else view_of(rows)
    rows = view.rows
    graded = [r for r in rows if r.status == "graded"]
    passing: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in graded:
        for c in r.report.get("checks") or []:
            passing[c["id"]][0] += c["status"] == "pass"
            passing[c["id"]][1] += 1
    finals = [g.final for g in view.grades if g.final is not None]
    return {
        "count": len(view.grades),
        "status": dict(Counter(g.status for g in view.grades)),
        "max_score": max((g.max_score for g in view.grades), default=0.0),
        "scores": finals,
        "mean": statistics.fmean(finals) if finals else 0.0,
        "median": statistics.median(finals) if finals else 0.0,
        "pass_rates": [(cid, p / n if n else 0.0) for cid, (p, n) in passing.items()],
        "diagnoses": ranked_diagnoses(rows),
        "problems": [r for r in rows if r.status != "graded"],
        "slowest": sorted(graded, key=lambda r: -r.duration_s)[:SLOWEST],
        "assignment": next((r.report.get("assignment") for r in rows), {}) or {},
    }


def _who(view: ClassView, students: list[str], names: dict[str, str]) -> str:
    """Students as links to their feedback, with their names."""
    by = {g.student: g.name for g in view.grades}
    return ", ".join(f"<a href=\"feedback/{esc(names.get(s, s))}.html\">{esc(s)}</a>"
                     + (f" ({esc(by[s], 80)})" if by.get(s) else "") for s in students)


def _diagnosis_section(view: ClassView, s: dict[str, Any], names: dict[str, str]) -> list[str]:
    from grader.batch import plots
    if not s["diagnoses"]:
        return ["<h2>Diagnoses</h2>", "<p>No diagnoses: every check passed.</p>"]
    labels = [(code, n) for code, n, _ in s["diagnoses"]]
    rows = [[esc(code) if i == 0 else "", esc(cid), str(len(who)), _who(view, who, names)]
            for code, _, checks in s["diagnoses"] for i, (cid, who) in enumerate(checks)]
    return ["<h2>Diagnoses, by diagnosis then check</h2>",
            "<p>Specific diagnoses first; those that only say a check failed (missing, exception, wrong) last.</p>",
            f"<img id=\"diagnoses\" alt=\"Diagnoses\" src=\"{plots.diagnoses(labels)}\">",
            table(["Diagnosis", "Check", "Students", "Who"], rows, "diagnosis-table", {2})]


def _course_sections(view: ClassView, names: dict[str, str]) -> list[str]:
    due = view.state.get("due")
    out = ["<h2>Lateness</h2>"]
    policy = view.state.get("policy")
    out.append(f"<p>Due {esc(show_time(due))}; {esc(policy.describe() if policy else '')}.</p>" if due
               else "<p>No due date is set.</p>")
    late = [g for g in view.grades if g.late.state in ("late", "no_credit", "unknown")]
    if late:
        out.append(table(["Student", "Submitted", "Penalty", "Note"],
                          [[_who(view, [g.student], names), esc(show_time(g.late.submitted)) if g.late.submitted else "?",
                            f"&minus;{pts(g.late.penalty)}", esc(g.late.note, 500)] for g in late], "late-table", {2}))
    over = [(g, o) for g in view.grades for o in g.overrides]
    out.append("<h2>Overrides</h2>")
    out.append(table(["Student", "Check", "Set to", "By", "When", "Why", "Note"],
                      [[_who(view, [g.student], names), esc(o.check_id or "(grade)"),
                        "excused" if o.excused else pts(o.points or 0.0), esc(o.by), esc(show_time(o.at)),
                        esc(o.comment, 500), esc("; ".join(g.notes), 500)] for g, o in over], "override-table")
               if over else "<p>None.</p>")
    out.append("<h2>Similar submissions</h2>")
    out.append(table(["Student", "Student", "Kind", "Score"],
                      [[_who(view, [p.a], names), _who(view, [p.b], names), p.kind, f"{p.score:.2f}"]
                       for p in view.pairs], "similarity-table", {3})
               if view.pairs else "<p>None (the starter code is not counted).</p>")
    return out


def report_html(view: ClassView | list[Row], names: dict[str, str] | None = None) -> str:
    """report.html: the class at a glance, in one page with its plots inside (works offline)."""
    from grader.batch import plots
    view = view if isinstance(view, ClassView) else view_of(view)
    names = names or {g.student: g.student for g in view.grades}
    s = summary(view)
    a, st = s["assignment"], s["status"]
    counts = ", ".join(f"{n} {k}" for k, n in sorted(st.items()))
    body = [f"<h1>Class report: {esc(a.get('id', '?'))}</h1>",
            f"<p>{s['count']} students: {counts}. Mean final grade {s['mean']:.2f}, median {pts(s['median'])} "
            f"of {pts(s['max_score'])}.</p>", "<h2>Final grades</h2>",
            f"<img id=\"histogram\" alt=\"Histogram of final grades\" "
            f"src=\"{plots.histogram(s['scores'], s['max_score'])}\">"]
    if s["pass_rates"]:
        body += ["<h2>Pass rate per check</h2>",
                 f"<img id=\"pass-rates\" alt=\"Pass rate per check\" src=\"{plots.pass_rates(s['pass_rates'])}\">",
                 table(["Check", "Passing"], [[esc(c), f"{100 * r:.0f}%"] for c, r in s["pass_rates"]],
                        "pass-rate-table", {1})]
    body += _diagnosis_section(view, s, names)
    body.append("<h2>Errors and timeouts</h2>")
    body.append(table(["Student", "Status", "Reason", "Points kept"],
                      [[_who(view, [r.student], names), f"<span class=\"{r.status}\">{r.status}</span>",
                        esc(r.reason, 500), pts(r.score)] for r in s["problems"]], "problem-table", {3})
                if s["problems"] else "<p>None.</p>")
    body += _course_sections(view, names)
    body += ["<h2>Slowest submissions</h2>",
             table(["Student", "Seconds", "Score"],
                    [[_who(view, [r.student], names), f"{r.duration_s:.1f}", f"{pts(r.score)}/{pts(r.max_score)}"]
                     for r in s["slowest"]], "slowest-table", {1, 2}),
             "<h2>All students</h2>",
             table(["Student", "Name", "Automatic", "Final", "Status", "Late", "Flags", "Notebook"],
                    [[f"<a href=\"feedback/{esc(names[g.student])}.html\">{esc(g.student)}</a>", esc(g.name),
                      f"{pts(g.auto)}/{pts(g.max_score)}", "excused" if g.final is None else pts(g.final),
                      g.status, esc(g.late.state if g.late.state != "none" else ""), esc("; ".join(g.flags)),
                      esc(g.row.path if g.row else "", 300)] for g in view.grades], "students-table", {2, 3})]
    return page(f"Class report: {a.get('id', '?')}", body)
