"""A student's final grade: the automatic score, each check a TA overrode, the late penalty,
and a TA's override of the whole grade, in that order; every step is a line of its own that
the reports, feedback and exports show.

A roster student with no submission gets a `missing` grade (0 points); a submission whose
student is not on the roster is kept and flagged, and so is a dropped student's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grader.course.late import Lateness, LatePolicy, lateness, parse_time
from grader.course.roster import Student
from grader.course.store import Override, points_text


@dataclass
class Grade:
    """What one student gets, and why, step by step."""

    student: str
    name: str
    status: str  # graded | error | timeout | missing
    reason: str
    auto: float  # the automatic score (checks and the assignment's penalties)
    max_score: float
    final: float | None  # None: excused
    late: Lateness
    overrides: list[Override] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # overrides the automatic score moved under
    flags: list[str] = field(default_factory=list)  # not on the roster, dropped
    roster: Student | None = None
    row: Any = None  # the gradebook's row (None when missing)

    @property
    def excused(self) -> bool:
        return self.final is None

    def lines(self) -> list[tuple[str, str]]:
        """(label, points) for each step from the automatic score to the final grade."""
        out = [("automatic score", f"{_p(self.auto)}/{_p(self.max_score)}")]
        for o in self.overrides:
            if o.check_id:
                out.append((f"override of {o.check_id} by {o.by}: {o.comment}",
                            "excused" if o.excused else points_text(o.points or 0.0)))
        if self.late.state in ("late", "no_credit"):
            out.append((f"late penalty: {self.late.note}", f"-{_p(self.late.penalty)}"))
        elif self.late.state == "unknown":
            out.append((self.late.note, ""))
        for o in self.overrides:
            if not o.check_id:
                out.append((f"override by {o.by}: {o.comment}", "excused" if o.excused else _p(o.points or 0.0)))
        out += [(n, "") for n in self.notes]
        out.append(("final grade", "excused" if self.final is None else f"{_p(self.final)}/{_p(self.max_score)}"))
        return out


def _p(x: float) -> str:
    return f"{x:g}" if x == int(x) else f"{x:.4g}"


def grade_of(row: Any, state: dict[str, Any], max_score: float) -> Grade:
    """The grade of a gradebook row (or of a roster student with no row: pass their id as a str)."""
    sid = row if isinstance(row, str) else row.student
    student, flags = _on_roster(sid, state.get("roster") or {})
    overrides = (state.get("overrides") or {}).get(sid, [])
    if isinstance(row, str):
        g = Grade(sid, student.name if student else "", "missing", "no submission", 0.0, max_score, 0.0,
                  Lateness("none"), overrides, flags=flags, roster=student)
        return _apply_whole(g)
    score, top, notes = _check_overrides(row, overrides, row.max_score or max_score)
    late = _lateness(row, student, state, top, score)
    g = Grade(sid, (student.name if student and student.name else row.name), row.status, row.reason, row.score,
              top, score - late.penalty, late, overrides, notes, flags, student, row)
    return _apply_whole(g)


def _on_roster(sid: str, roster: dict[str, tuple[Student, str]]) -> tuple[Student | None, list[str]]:
    """The student's roster entry and the flags it gives (none without a roster)."""
    entry = roster.get(sid)
    if roster and entry is None:
        return None, ["not on the roster"]
    if entry and entry[1] == "dropped":
        return entry[0], ["dropped from the roster"]
    return (entry[0] if entry else None), []


def _check_overrides(row: Any, overrides: list[Override], top: float) -> tuple[float, float, list[str]]:
    """The score and maximum once each check override replaces that check's points."""
    checks = {c["id"]: c for c in row.report.get("checks") or []}
    score, notes = row.score, []
    for o in overrides:
        c = checks.get(o.check_id)
        if not o.check_id or c is None:
            continue
        score += (0.0 if o.excused else (o.points or 0.0)) - c["points"]
        top -= c["max_points"] if o.excused else 0.0
        if o.auto_points is not None and abs(o.auto_points - c["points"]) > 1e-9:
            notes.append(f"a regrade changed the automatic points of {o.check_id} from {_p(o.auto_points)} "
                         f"to {_p(c['points'])}; the override stands")
    return score, top, notes


def _lateness(row: Any, student: Student | None, state: dict[str, Any], top: float, score: float) -> Lateness:
    """The row's lateness against the student's due date (their extension's, else the course's)."""
    due, how = _due(row.student, state)
    prov = row.provenance  # (the gradebook's: when and how it was handed in)
    submitted, how_time = prov.submitted_at, prov.submitted_how
    if student and student.submitted and submitted is None:
        submitted, how_time = parse_time(student.submitted), "the roster's submitted column"
    late = lateness(due, submitted, how_time, state.get("policy") or LatePolicy(), top, score, prov.marked_late)
    if how and late.note:
        late.note += f" ({how})"
    return late


def _due(student: str, state: dict[str, Any]) -> tuple[float | None, str]:
    ext = (state.get("extensions") or {}).get(student)
    if ext:
        return ext[0], "extension" + (f": {ext[1]}" if ext[1] else "")
    return state.get("due"), ""


def _apply_whole(g: Grade) -> Grade:
    for o in g.overrides:
        if o.check_id:
            continue
        if o.auto_points is not None and abs(o.auto_points - g.auto) > 1e-9:
            g.notes.append(f"a regrade changed the automatic score from {_p(o.auto_points)} to {_p(g.auto)}; "
                           "the override stands")
        g.final = None if o.excused else o.points
    return g


def class_grades(rows: list[Any], state: dict[str, Any], max_score: float) -> list[Grade]:
    """Every student's grade: each row, then each active roster student with none, by student id."""
    have = {r.student for r in rows}
    missing = [sid for sid, (_, status) in (state.get("roster") or {}).items()
               if sid not in have and status == "active"]
    grades = [grade_of(r, state, max_score) for r in rows] + [grade_of(s, state, max_score) for s in missing]
    return sorted(grades, key=lambda g: g.student)
