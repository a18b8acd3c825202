"""`grade roster`, `grade deadline` and `grade override`: the course's model, edited from the
command line (thin commands over grader.course, in the gradebook's file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from grader.errors import GraderError

DEFAULT_DB = Path("gradebook.sqlite")
DB = click.option("--db", type=click.Path(path_type=Path), default=DEFAULT_DB, show_default=True,
                  help="The gradebook (SQLite) the course lives in.")


def _fail(message: str) -> None:
    from grader.inert import inert

    click.echo(f"grade: error: {inert(message, 1000)}", err=True)
    sys.exit(2)


@contextmanager
def _book(db: Path, create: bool = True) -> Iterator[Any]:
    """The gradebook, opened; a GraderError is one line and exit 2, anything else exit 3."""
    from grader.batch.gradebook import Gradebook

    try:
        book = Gradebook(db, create=create)
        try:
            yield book
        finally:
            book.close()
    except GraderError as e:
        _fail(str(e))
    except Exception as e:  # (a damaged gradebook): one line, no traceback
        from grader.inert import inert

        click.echo(f"grade: internal error: {inert(f'{type(e).__name__}: {e}', 300)}", err=True)
        sys.exit(3)


@click.group("roster")
def roster_group() -> None:
    """The class list: who should have handed in."""


@roster_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["canvas", "moodle", "csv"]),
              help="Canvas gradebook export, Moodle grading worksheet or participants, or id,name,email,section "
                   "(default: told from the header).")
@DB
def roster_import(file: Path, fmt: str | None, db: Path) -> None:
    """Import (or update) the roster; students no longer listed are marked dropped, never deleted."""
    import json

    from grader.course.exports import canvas_assignment_columns
    from grader.course.roster import detect, read_roster

    try:  # read before the gradebook is opened: a bad file leaves nothing behind
        students = read_roster(file, fmt)
    except GraderError as e:
        _fail(str(e))
        return
    with _book(db) as book:
        counts = book.course.import_roster(students)
        if (fmt or detect(_header(file))) == "canvas":
            book.course.set_setting("canvas_columns", json.dumps(canvas_assignment_columns(_header(file))))
        click.echo(f"roster: {counts['active']} students ({counts['added']} new, {counts['updated']} updated, "
                   f"{counts['dropped']} dropped) in {db}")


def _header(file: Path) -> list[str]:
    import csv

    with open(file, encoding="utf-8-sig", errors="replace", newline="") as f:
        return next(csv.reader(f), [])


@click.group("deadline")
def deadline_group() -> None:
    """The due date, the late policy and extensions."""


def set_deadline(db: Path, due: str | None, penalty: str | None = None, grace: str | None = None,
                 cap: str | None = None, limit: str | None = None) -> None:
    """Set the due date and late policy in the gradebook (None keeps what it holds)."""
    from grader.course.late import LatePolicy, parse_time

    with _book(db) as book:
        c = book.course
        policy = LatePolicy.parse(penalty, grace, cap, limit, base=c.policy())
        c.set_deadline(parse_time(due) if due else None, policy)


@deadline_group.command("set")
@click.option("--due", metavar="WHEN", help="ISO 8601: 2026-03-01T23:59+01:00 (no zone: UTC).")
@click.option("--penalty", metavar="RATE", help="Late penalty: 10%/day or 2%/hour of the points.")
@click.option("--grace", metavar="SPAN", help="No penalty this long after the due date: 15m, 1h.")
@click.option("--cap", metavar="PERCENT", help="The penalty never takes more than this: 50%.")
@click.option("--limit", metavar="SPAN", help="No credit this long after the due date: 7d ('none': no limit).")
@DB
def deadline_set(due: str | None, penalty: str | None, grace: str | None, cap: str | None, limit: str | None,
                 db: Path) -> None:
    """Set the due date and the late policy (what is not given is kept)."""
    from grader.course.late import show_time

    set_deadline(db, due, penalty, grace, cap, limit)
    with _book(db) as book:
        d = book.course.due()
        click.echo(f"deadline: due {show_time(d) if d else '(not set)'}; {book.course.policy().describe()}")


@deadline_group.command("extend")
@click.argument("student")
@click.option("--until", "until", required=True, metavar="WHEN", help="The student's own due date (ISO 8601).")
@click.option("--comment", default="", help="Why (shown in the reports).")
@click.option("--by", default=None, help="Who grants it (default: the OS user).")
@DB
def deadline_extend(student: str, until: str, comment: str, by: str | None, db: Path) -> None:
    """Give one student an extension."""
    from grader.course.late import parse_time, show_time
    from grader.course.store import who

    with _book(db) as book:
        t = parse_time(until)
        book.course.extend(student, t, comment, by or who())
        click.echo(f"extension: {student} due {show_time(t)}")


@click.command("override")
@click.argument("student")
@click.option("--check", "check_id", default="", metavar="ID", help="Override one check's points (default: the grade).")
@click.option("--points", type=float, help="The points to give.")
@click.option("--excuse", is_flag=True, help="Excuse the student (or the check): no grade counted.")
@click.option("--clear", is_flag=True, help="Withdraw the override (it stays in the history).")
@click.option("--comment", default="", help="Why: shown to the student and in every report.")
@click.option("--by", default=None, help="Who decides (default: the OS user).")
@DB
def override_cmd(student: str, check_id: str, points: float | None, excuse: bool, clear: bool, comment: str,
                 by: str | None, db: Path) -> None:
    """Set a student's grade, or one check's points, by hand; kept across regrades."""
    import math

    from grader.course.store import points_text, who

    if points is not None and not math.isfinite(points):
        _fail(f"--points {points}: not a number of points")
    with _book(db, create=False) as book:
        rows = {r.student: r for r in book.current()}
        if student not in rows and student not in book.course.roster():
            raise GraderError(f"{student}: no such student in {db} (neither graded nor on the roster)")
        if clear:
            done = book.course.clear_override(student, check_id)
            click.echo(f"override: {'withdrawn' if done else 'none to withdraw'} for {student}")
            return
        auto = _auto_points(rows.get(student), check_id)
        book.course.override(student, check_id, points, excuse, comment, by or who(), auto)
        what = "excused" if excuse else points_text(points or 0.0)
        click.echo(f"override: {student} {'check ' + check_id if check_id else 'grade'} set to {what} "
                   f"(automatic: {'-' if auto is None else f'{auto:g}'})")


def _auto_points(row: Any, check_id: str) -> float | None:
    """The automatic points the override replaces (kept, to say when a regrade moves them)."""
    if row is None:
        return 0.0 if not check_id else None
    if not check_id:
        return row.score
    for c in row.report.get("checks") or []:
        if c["id"] == check_id:
            return c["points"]
    raise GraderError(f"{check_id}: no such check (the checks: "
                      + ", ".join(c["id"] for c in row.report.get("checks") or []) + ")")
