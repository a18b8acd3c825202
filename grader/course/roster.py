"""Rosters as the LMS exports them: Canvas's gradebook export, Moodle's grading worksheet or
participants list, or a plain CSV with `id, name, email, section`.

The id of a student is the one the submissions carry: Canvas's user id (the `ID` column, the
number in `name_userid_submissionid_file`), Moodle's participant number (`Participant N` in
the worksheet, the number in `Full Name_N_assignsubmission_file_`).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from grader.course.late import parse_time
from grader.errors import GraderError

FORMATS = ("canvas", "moodle", "csv")
MAX_ROSTER_BYTES = 20 * 1024 * 1024


@dataclass
class Student:
    """One student of the roster, with what each LMS needs to match them on import."""

    id: str
    name: str = ""
    email: str = ""
    section: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    submitted: str = ""  # a submission time the roster gives (ISO 8601), else ""


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        data = path.read_bytes()[:MAX_ROSTER_BYTES + 1]
    except OSError as e:
        raise GraderError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise GraderError(f"{path}: larger than {MAX_ROSTER_BYTES >> 20} MB: not a roster")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")  # (Excel's own CSV: every byte is a character)
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in r.items()}
                for r in reader]
    except csv.Error as e:
        raise GraderError(f"{path}: not a CSV file ({e})") from None
    if not reader.fieldnames:
        raise GraderError(f"{path}: empty, no header row")
    return rows


def detect(header: list[str]) -> str:
    """The roster's format, from its header."""
    h = {c.strip().lower() for c in header}
    if {"student", "id", "sis user id"} <= h:
        return "canvas"
    if "identifier" in h or {"first name", "surname"} <= h:
        return "moodle"
    return "csv"


def read_roster(path: Path, fmt: str | None = None) -> list[Student]:
    """Every student of a roster file; GraderError (one line) for a file that is not one."""
    rows = _rows(path)
    header = list(rows[0]) if rows else []
    fmt = fmt or detect(header)
    if fmt not in FORMATS:
        raise GraderError(f"unknown roster format {fmt!r} (canvas, moodle or csv)")
    students = {"canvas": _canvas, "moodle": _moodle, "csv": _plain}[fmt](rows, path)
    seen: dict[str, Student] = {}
    for s in students:
        if s.id in seen:
            raise GraderError(f"{path}: student {s.id} is listed twice")
        seen[s.id] = s
    return list(seen.values())


def _need(rows: list[dict[str, str]], path: Path, fmt: str, *columns: str) -> None:
    have = {c.lower() for c in rows[0]} if rows else set()
    missing = [c for c in columns if c.lower() not in have]
    if missing:
        raise GraderError(f"{path}: not a {fmt} roster (no column {', '.join(missing)})")


def _get(row: dict[str, str], *names: str) -> str:
    lower = {k.lower(): v for k, v in row.items()}
    return next((lower[n.lower()] for n in names if lower.get(n.lower())), "")


def _canvas(rows: list[dict[str, str]], path: Path) -> list[Student]:
    # Canvas's gradebook export: Student, ID, SIS User ID, SIS Login ID, Section, then one
    # column per assignment; a "Points Possible" row (and "Student, Test") are not students.
    _need(rows, path, "Canvas", "Student", "ID")
    out = []
    for r in rows:
        name, uid = _get(r, "Student"), _get(r, "ID")
        if not uid.isdigit() or name.strip() in ("Points Possible", "Student, Test", "Test Student"):
            continue
        out.append(Student(uid, name, _get(r, "Email", "Email address"), _get(r, "Section"),
                           _get(r, "SIS User ID"), _get(r, "SIS Login ID")))
    return out


PARTICIPANT = re.compile(r"^Participant\s+(\d+)$", re.IGNORECASE)


def _moodle(rows: list[dict[str, str]], path: Path) -> list[Student]:
    # The grading worksheet (Identifier "Participant N", Full name, Email address, ...), or the
    # participants list (First name, Surname, ID number, Email address, Groups).
    if rows and "identifier" in {c.lower() for c in rows[0]}:
        out = []
        for r in rows:
            m = PARTICIPANT.match(_get(r, "Identifier"))
            if not m:
                raise GraderError(f"{path}: identifier {_get(r, 'Identifier')!r} is not 'Participant N'")
            out.append(Student(m[1], _get(r, "Full name"), _get(r, "Email address"), _get(r, "Groups", "Group")))
        return out
    _need(rows, path, "Moodle", "First name", "Surname", "Email address")
    return [Student(_get(r, "ID number", "Email address"), f"{_get(r, 'First name')} {_get(r, 'Surname')}".strip(),
                    _get(r, "Email address"), _get(r, "Groups", "Group")) for r in rows]


def _plain(rows: list[dict[str, str]], path: Path) -> list[Student]:
    if rows and not {"id", "student_id"} & {c.lower() for c in rows[0]}:
        raise GraderError(f"{path}: not a CSV roster (no column id)")
    out = []
    for r in rows:
        sid = _get(r, "id", "student_id")
        if not sid:
            raise GraderError(f"{path}: a row without an id")
        submitted = _get(r, "submitted")
        if submitted:  # (checked now: a report must not fail on it later)
            parse_time(submitted)
        out.append(Student(sid, _get(r, "name"), _get(r, "email"), _get(r, "section"),
                           _get(r, "sis_user_id"), _get(r, "sis_login_id"), submitted))
    return out
