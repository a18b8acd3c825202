"""The gradebook: one SQLite file (WAL) holding every submission, every run and every check.

Each result is committed in one transaction as soon as it is graded, and marks the earlier
runs of its submission as not current, so a batch killed at any moment and started again
leaves every submission with exactly one current result (a unique index enforces it).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import GraderError

SCHEMA_VERSION = "1"

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    student TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    submission_id INTEGER NOT NULL REFERENCES submissions(id),
    sha256 TEXT NOT NULL,
    assignment_id TEXT NOT NULL,
    spec_sha256 TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    environment TEXT NOT NULL,
    batch_seed INTEGER NOT NULL,
    seed INTEGER NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    duration_s REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('graded', 'error', 'timeout')),
    reason TEXT NOT NULL DEFAULT '',
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    penalties REAL NOT NULL,
    report TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX IF NOT EXISTS one_current_run ON runs(submission_id) WHERE current = 1;
CREATE TABLE IF NOT EXISTS checks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    check_id TEXT NOT NULL,
    target TEXT NOT NULL,
    visibility TEXT NOT NULL,
    status TEXT NOT NULL,
    points REAL NOT NULL,
    max_points REAL NOT NULL,
    codes TEXT NOT NULL,
    PRIMARY KEY (run_id, check_id)
);
"""


@dataclass
class Result:
    """One finished grading, ready to be recorded."""

    student: str
    name: str
    path: str
    sha256: str
    batch_seed: int
    seed: int
    started: float
    finished: float
    status: str  # graded | error | timeout
    reason: str
    report: dict[str, Any]
    environment: dict[str, Any]
    grader_version: str


@dataclass
class Row:
    """A submission's current run, as the reports read it."""

    student: str
    name: str
    path: str
    sha256: str
    status: str
    reason: str
    score: float
    max_score: float
    penalties: float
    duration_s: float
    seed: int
    report: dict[str, Any]


class Gradebook:
    """A gradebook file, opened for one batch (or for reading reports)."""

    def __init__(self, path: Path, create: bool = True):
        if not create and not path.is_file():
            raise GraderError(f"{path}: no such gradebook")
        try:
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            tables = {name for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if create and not tables:  # (one transaction: a kill leaves a whole gradebook or an empty file)
                self.db.executescript(f"BEGIN; {_DDL}; INSERT OR IGNORE INTO meta VALUES ('schema', "
                                      f"'{SCHEMA_VERSION}'); COMMIT;")
            elif "meta" not in tables or self.meta("schema") != SCHEMA_VERSION:
                # another program's database, or another version's: never written into
                raise GraderError(f"{path}: not a gradebook this grader wrote")
            elif create:
                self.db.executescript(_DDL)  # (IF NOT EXISTS: what a crash mid-creation left out)
        except sqlite3.DatabaseError as e:
            raise GraderError(f"{path}: not a usable gradebook ({e})") from None
        except OSError as e:  # (its folder cannot be made: a file is in the way, no permission)
            raise GraderError(f"{path}: cannot be created ({e.strerror or e})") from None
        self.path = path

    def close(self) -> None:
        """Close the file (everything is already committed)."""
        self.db.close()

    def meta(self, key: str) -> str | None:
        """A value of the gradebook's own settings (assignment, batch seed)."""
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            return None
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Set one of the gradebook's own settings."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def is_current(self, student: str, sha256: str, spec_sha256: str, batch_seed: int) -> bool:
        """Whether this student's current run graded this content with this spec and batch seed."""
        row = self.db.execute(
            "SELECT 1 FROM runs r JOIN submissions s ON s.id = r.submission_id WHERE s.student = ?"
            " AND r.current = 1 AND r.sha256 = ? AND r.spec_sha256 = ? AND r.batch_seed = ?",
            (student, sha256, spec_sha256, batch_seed)).fetchone()
        return row is not None

    def record(self, r: Result) -> None:
        """Commit one result as the student's current one (earlier runs are kept, not current)."""
        rep = r.report
        penalties = sum(f.get("points") or 0.0 for f in rep.get("flags") or [])
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO submissions (student, name, path, sha256) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(student) DO UPDATE SET name = excluded.name, path = excluded.path,"
                " sha256 = excluded.sha256", (r.student, r.name, r.path, r.sha256))
            sid = db.execute("SELECT id FROM submissions WHERE student = ?", (r.student,)).fetchone()[0]
            db.execute("UPDATE runs SET current = 0 WHERE submission_id = ? AND current = 1", (sid,))
            asg = rep.get("assignment") or {}
            cur = db.execute(
                "INSERT INTO runs (submission_id, sha256, assignment_id, spec_sha256, grader_version,"
                " environment, batch_seed, seed, started, finished, duration_s, status, reason, score,"
                " max_score, penalties, report, current) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)",
                (sid, r.sha256, str(asg.get("id", "")), str(asg.get("spec_sha256", "")), r.grader_version,
                 json.dumps(r.environment, sort_keys=True), r.batch_seed, r.seed, r.started, r.finished,
                 round(r.finished - r.started, 3), r.status, r.reason, float(rep.get("score") or 0.0),
                 float(rep.get("max_score") or 0.0), float(penalties), json.dumps(rep)))
            db.executemany(
                "INSERT INTO checks VALUES (?,?,?,?,?,?,?,?)",
                [(cur.lastrowid, c["id"], c["target"], c["visibility"], c["status"], c["points"],
                  c["max_points"], " ".join(d["code"] for d in c.get("diagnosis") or []))
                 for c in rep.get("checks") or []])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def current(self) -> Iterator[Row]:
        """Every submission's current run, by student id."""
        q = ("SELECT s.student, s.name, s.path, r.sha256, r.status, r.reason, r.score, r.max_score,"
             " r.penalties, r.duration_s, r.seed, r.report FROM submissions s"
             " JOIN runs r ON r.submission_id = s.id AND r.current = 1 ORDER BY s.student")
        try:
            rows = self.db.execute(q).fetchall()
        except sqlite3.DatabaseError as e:
            raise GraderError(f"{self.path}: not a usable gradebook ({e})") from None
        for row in rows:
            yield Row(*row[:11], json.loads(row[11]))

    def counts(self) -> dict[str, int]:
        """How many submissions' current runs are graded, errors and timeouts."""
        rows = self.db.execute("SELECT status, count(*) FROM runs WHERE current = 1 GROUP BY status")
        return {status: n for status, n in rows}


def now() -> float:
    """Wall-clock time for the runs table (seconds since the epoch)."""
    return time.time()
