"""The course's tables, in the gradebook's SQLite file: the roster, extensions, overrides and
the course's settings (due date, late policy). Nothing here deletes a result: a student who
leaves the roster is marked dropped, an override replaced is kept as inactive history.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from grader.course.late import LatePolicy
from grader.course.roster import Student
from grader.errors import GraderError

DDL = """
CREATE TABLE IF NOT EXISTS roster (
    student TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    section TEXT NOT NULL DEFAULT '',
    sis_user_id TEXT NOT NULL DEFAULT '',
    sis_login_id TEXT NOT NULL DEFAULT '',
    submitted TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'dropped')),
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS extensions (
    student TEXT PRIMARY KEY,
    due REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    by TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    id INTEGER PRIMARY KEY,
    student TEXT NOT NULL,
    check_id TEXT NOT NULL DEFAULT '',
    points REAL,
    excused INTEGER NOT NULL DEFAULT 0,
    comment TEXT NOT NULL,
    by TEXT NOT NULL,
    at REAL NOT NULL,
    auto_points REAL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_override ON overrides(student, check_id) WHERE active = 1;
CREATE TABLE IF NOT EXISTS course (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Override:
    """A TA's decision on a student's grade (the whole grade, or one check's points)."""

    student: str
    check_id: str  # "" for the whole grade
    points: float | None
    excused: bool
    comment: str
    by: str
    at: float
    auto_points: float | None  # the automatic points when the override was made

    def describe(self) -> str:
        what = "excused" if self.excused else points_text(self.points or 0.0)
        where = f"check {self.check_id}" if self.check_id else "grade"
        return f"{where} set to {what} by {self.by} ({self.comment})"


def points_text(x: float) -> str:
    """`1 point`, `2.5 points`."""
    return f"{x:g} point" + ("" if x == 1 else "s")


def who() -> str:
    """The person at the keyboard, for an override's `by` (`--by` says otherwise)."""
    try:
        return getpass.getuser()
    except Exception:  # (no user name in a container): the uid still says who
        return f"uid {os.getuid()}"


class Course:
    """The course's tables on an open gradebook connection (autocommit, as the gradebook's)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def _tx(self, statements: Iterable[tuple[str, tuple]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self.db.execute(sql, args)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # ---------------------------------------------------------------- roster

    def import_roster(self, students: list[Student]) -> dict[str, int]:
        """Add or update every student; those no longer listed are marked dropped (never deleted)."""
        old = {r[0]: r[1] for r in self.db.execute("SELECT student, status FROM roster")}
        now = time.time()
        new = {s.id for s in students}
        stmts = [("INSERT INTO roster VALUES (?,?,?,?,?,?,?,'active',?) ON CONFLICT(student) DO UPDATE SET"
                  " name=excluded.name, email=excluded.email, section=excluded.section,"
                  " sis_user_id=excluded.sis_user_id, sis_login_id=excluded.sis_login_id,"
                  " submitted=excluded.submitted, status='active', updated=excluded.updated",
                  (s.id, s.name, s.email, s.section, s.sis_user_id, s.sis_login_id, s.submitted, now))
                 for s in students]
        gone = [sid for sid, status in old.items() if sid not in new and status == "active"]
        stmts += [("UPDATE roster SET status = 'dropped', updated = ? WHERE student = ?", (now, sid)) for sid in gone]
        self._tx(stmts)
        return {"added": len(new - set(old)), "updated": len(new & set(old)), "dropped": len(gone),
                "active": len(new)}

    def roster(self) -> dict[str, tuple[Student, str]]:
        """student id -> (student, status), every student ever imported."""
        rows = self.db.execute("SELECT student, name, email, section, sis_user_id, sis_login_id, submitted,"
                               " status FROM roster ORDER BY student")
        return {r[0]: (Student(*r[:7]), r[7]) for r in rows}

    # ---------------------------------------------------------------- deadlines

    def setting(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM course WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM course WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO course VALUES (?, ?)", (key, value))

    def due(self) -> float | None:
        """The assignment's due date (seconds since the epoch), if one is set."""
        value = self.setting("due")
        return float(value) if value else None

    def policy(self) -> LatePolicy:
        try:
            return LatePolicy.from_json(self.setting("late_policy"))
        except (ValueError, TypeError):
            raise GraderError("the gradebook's late policy cannot be read: set it again") from None

    def set_deadline(self, due: float | None, policy: LatePolicy | None) -> None:
        """The due date (None keeps it) and the late policy (None keeps it)."""
        if due is not None:
            self.set_setting("due", repr(due))
        if policy is not None:
            self.set_setting("late_policy", policy.to_json())

    def extend(self, student: str, due: float, comment: str, by: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO extensions VALUES (?,?,?,?,?)", (student, due, comment, by, time.time()))

    def extensions(self) -> dict[str, tuple[float, str]]:
        """student -> (their own due date, why)."""
        return {s: (d, c) for s, d, c in self.db.execute("SELECT student, due, comment FROM extensions")}

    # ---------------------------------------------------------------- overrides

    def override(self, student: str, check_id: str, points: float | None, excused: bool, comment: str,
                 by: str, auto_points: float | None) -> None:
        """Record an override; an earlier one of the same student and check becomes history."""
        if not comment.strip():
            raise GraderError("an override needs --comment: why the grade changes")
        if (points is None) == (not excused):
            raise GraderError("give either --points P or --excuse")
        self._tx([("UPDATE overrides SET active = 0 WHERE student = ? AND check_id = ? AND active = 1",
                   (student, check_id)),
                  ("INSERT INTO overrides (student, check_id, points, excused, comment, by, at, auto_points)"
                   " VALUES (?,?,?,?,?,?,?,?)",
                   (student, check_id, points, int(excused), comment, by, time.time(), auto_points))])

    def clear_override(self, student: str, check_id: str) -> bool:
        """Withdraw the active override (kept as history); whether there was one."""
        cur = self.db.execute("UPDATE overrides SET active = 0 WHERE student = ? AND check_id = ? AND active = 1",
                              (student, check_id))
        return cur.rowcount > 0

    def overrides(self) -> dict[str, list[Override]]:
        """student -> their active overrides, the whole-grade one last."""
        out: dict[str, list[Override]] = {}
        rows = self.db.execute("SELECT student, check_id, points, excused, comment, by, at, auto_points"
                               " FROM overrides WHERE active = 1 ORDER BY student, check_id = '', check_id")
        for s, cid, p, ex, c, by, at, auto in rows:
            out.setdefault(s, []).append(Override(s, cid, p, bool(ex), c, by, at, auto))
        return out

    def state(self) -> dict[str, object]:
        """Everything of the course a report needs, read once."""
        return {"roster": self.roster(), "due": self.due(), "policy": self.policy(),
                "extensions": self.extensions(), "overrides": self.overrides(),
                "canvas_columns": json.loads(self.setting("canvas_columns") or "[]")}
