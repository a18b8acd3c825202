"""Grade files each LMS imports as they are, and feedback files named as its bulk upload expects.

Canvas (Gradebook > Import): a CSV whose columns are `Student`, `ID`, `SIS User ID`,
`SIS Login ID`, `Section` (Canvas matches the student by `ID`, else the SIS ids), then one
column per assignment headed `Name (assignment id)`; any other column becomes a new assignment,
so there is exactly one. A second row `Points Possible` carries the maximum. An excused
student's cell is `EX`. Canvas takes no comments in this file: the feedback files carry them,
named `name_userid_submissionid_feedback.html` as in its submissions download (its
"Re-Upload Submissions" attaches each to its submission).

Moodle (assignment > Upload grading worksheet): a CSV with `Identifier` (`Participant N`),
`Full name`, `Email address`, `Status`, `Grade`, `Maximum Grade`, `Grade can be changed`,
`Last modified (submission)` and `Feedback comments`; Moodle reads `Identifier`, `Grade` and the
feedback column. `Last modified (grade)` is left out on purpose: with it, Moodle skips every
grade changed since the worksheet was downloaded. Feedback files go in a zip of folders
`Full Name_N_assignsubmission_file_/` (its "Upload multiple feedback files in a zip").

Brightspace (Grades > Import): a CSV with `OrgDefinedId` (the roster's id), the grade item's
`NAME Points Grade` column (the item's name as Brightspace shows it: an unknown name would
create a new item) and `End-of-Line Indicator` (`#` on every row), as in Brightspace's
Grades_Sample_Import_File; no names or emails (Brightspace says not to import them). An excused
student's cell is empty (left as it is). Brightspace takes no feedback in this file.

Every file leaves out a submission whose student is not on the roster, or was dropped from it
(the LMS has no one to give it to): the reports flag it for a person to sort out.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone

from grader.course.grades import Grade
from grader.errors import GraderError

CANVAS_HEAD = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_HEAD = ["Identifier", "Full name", "Email address", "Status", "Grade", "Maximum Grade",
               "Grade can be changed", "Last modified (submission)", "Feedback comments"]
CANVAS_COLUMN = re.compile(r"^.+ \((\d+)\)$")
CANVAS_FIXED = {*CANVAS_HEAD, "Current Score", "Unposted Current Score", "Final Score", "Unposted Final Score",
                "Current Grade", "Unposted Current Grade", "Final Grade", "Unposted Final Grade",
                "Current Points", "Final Points", "Override Score", "Override Grade", "Integration ID"}


def _cell(text: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet; names come from students.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x == x else ""


def canvas_assignment_columns(header: list[str]) -> list[str]:
    """The assignment columns of a Canvas gradebook export (`Name (id)`), in order."""
    return [h for h in header if h not in CANVAS_FIXED and CANVAS_COLUMN.match(h) and "Score" not in h]


def canvas_csv(grades: list[Grade], column: str) -> str:
    """The Canvas gradebook import file: one assignment column, named as Canvas names it."""
    if not CANVAS_COLUMN.match(column):
        raise GraderError(f"Canvas column {column!r} is not 'Assignment name (assignment id)'")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CANVAS_HEAD, column])
    top = max((g.max_score for g in grades), default=0.0)
    w.writerow(["Points Possible", "", "", "", "", _num(top)])
    for g in grades:
        if not g.student.isdigit() or g.flags:  # no row Canvas could match: not a Canvas id, not enrolled
            continue
        r = g.roster
        w.writerow([_cell(g.name), g.student, _cell(r.sis_user_id if r else ""), _cell(r.sis_login_id if r else ""),
                    _cell(r.section if r else ""), "EX" if g.final is None else _num(g.final)])
    return buf.getvalue()


def moodle_time(t: float | None) -> str:
    """A time as Moodle's worksheet writes it ("Monday, 2 March 2026, 11:59 PM"), in UTC."""
    if t is None:
        return "-"
    d = datetime.fromtimestamp(t, timezone.utc)
    return d.strftime("%A, ") + f"{d.day} " + d.strftime("%B %Y, %I:%M %p").replace(" 0", " ", 1)


def moodle_comment(g: Grade) -> str:
    """The feedback comment: each step of the grade, one per line (Moodle shows it as HTML)."""
    import html

    return "<br>".join(html.escape(f"{label}: {points}" if points else label) for label, points in g.lines())


def moodle_csv(grades: list[Grade]) -> str:
    """The Moodle grading worksheet to upload: one row per participant."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MOODLE_HEAD)
    for g in grades:
        if not g.student.isdigit() or g.flags:  # no row Moodle could match: not a participant, not enrolled
            continue
        status = {"missing": "No submission"}.get(g.status, "Submitted for grading")
        if g.late.state in ("late", "no_credit"):
            status += " - late"
        r = g.roster
        w.writerow([f"Participant {g.student}", _cell(g.name), _cell(r.email if r else ""), status,
                    "" if g.final is None else f"{g.final:.2f}", f"{g.max_score:.2f}", "Yes",
                    moodle_time(g.late.submitted), _cell(moodle_comment(g))])
    return buf.getvalue()


def brightspace_csv(grades: list[Grade], item: str) -> str:
    """The Brightspace grade import file for one grade item."""
    if not item.strip() or "," in item or item.strip().endswith("Points Grade"):
        raise GraderError(f"Brightspace grade item {item!r}: give its name as Brightspace shows it "
                          "(without 'Points Grade' and without commas)")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["OrgDefinedId", f"{item.strip()} Points Grade", "End-of-Line Indicator"])
    for g in grades:
        if g.flags:  # not enrolled: Brightspace has no one to give it to
            continue
        w.writerow([_cell(g.student), "" if g.final is None else _num(g.final), "#"])
    return buf.getvalue()


def canvas_feedback_name(lms_key: str) -> str | None:
    """The feedback file of a Canvas submission, from its downloaded file name, or None."""
    m = re.match(r"^([^_/]+_(?:LATE_)?\d+_\d+_)", lms_key)
    return f"{m[1]}feedback.html" if m else None


def moodle_feedback_name(lms_key: str, student: str, name: str) -> str:
    """The feedback file of a Moodle participant: in their submission folder's name."""
    folder = lms_key.split("/")[0] if lms_key.endswith("_") or "/" in lms_key else ""
    if not re.match(r"^.+_\d+_assign(?:submission|feedback)_", folder):
        safe = re.sub(r"[/\\\x00-\x1f]+", "_", name or "Student").strip() or "Student"
        folder = f"{safe}_{student}_assignsubmission_file_"
    return f"{folder}/feedback.html"
