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
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from grader.course import store
from grader.errors import GraderError

SCHEMA_VERSION = "2"
# Version 1 gradebooks are migrated in place: these columns added to `submissions`, the
# course's tables created (one transaction: a kill leaves version 1 or version 2, whole).
SUBMISSION_COLUMNS = {
    "submitted_at": "REAL",  # when the student handed it in (None: unknown)
    "submitted_how": "TEXT NOT NULL DEFAULT ''",  # where that time came from
    "marked_late": "INTEGER NOT NULL DEFAULT 0",  # the LMS's own late mark (Canvas's _LATE_)
    "lms_key": "TEXT NOT NULL DEFAULT ''",  # the LMS's name for it (file or folder), for feedback files
    "code_sha256": "TEXT NOT NULL DEFAULT ''",  # the normalised code's hash (similarity)
    "fingerprints": "TEXT NOT NULL DEFAULT ''",  # its winnowing fingerprints (similarity)
}

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    student TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    submitted_at REAL,
    submitted_how TEXT NOT NULL DEFAULT '',
    marked_late INTEGER NOT NULL DEFAULT 0,
    lms_key TEXT NOT NULL DEFAULT '',
    code_sha256 TEXT NOT NULL DEFAULT '',
    fingerprints TEXT NOT NULL DEFAULT ''
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
class Provenance:
    """What the export says of a submission beside its notebook: when and how it was handed in,
    the LMS's name for it, and its normalised code's hash and fingerprints (for similarity)."""

    submitted_at: float | None = None
    submitted_how: str = ""
    marked_late: bool = False
    lms_key: str = ""
    code_sha256: str = ""
    fingerprints: str = ""


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
    provenance: Provenance = field(default_factory=Provenance)


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
    provenance: Provenance = field(default_factory=Provenance)


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
                self.db.executescript(f"BEGIN; {_DDL}; {store.DDL}; INSERT OR IGNORE INTO meta VALUES ('schema', "
                                      f"'{SCHEMA_VERSION}'); COMMIT;")
            elif "meta" not in tables:
                raise GraderError(f"{path}: not a gradebook this grader wrote")
            elif self.meta("schema") == "1" and "submissions" in tables:
                self._migrate_from_1()
            if self.meta("schema") != SCHEMA_VERSION:
                # another program's database, or another version's: never written into
                raise GraderError(f"{path}: not a gradebook this grader wrote")
            if create:
                self.db.executescript(_DDL + store.DDL)  # (IF NOT EXISTS: what a crash mid-creation left out)
        except sqlite3.DatabaseError as e:
            raise GraderError(f"{path}: not a usable gradebook ({e})") from None
        except OSError as e:  # (its folder cannot be made: a file is in the way, no permission)
            raise GraderError(f"{path}: cannot be created ({e.strerror or e})") from None
        self.path = path

    def _migrate_from_1(self) -> None:
        """A version 1 gradebook made version 2 in place, in one transaction (no result touched)."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(submissions)")}
        adds = "".join(f"ALTER TABLE submissions ADD COLUMN {c} {t};"
                       for c, t in SUBMISSION_COLUMNS.items() if c not in have)
        self.db.executescript(f"BEGIN IMMEDIATE; {adds} {store.DDL}; UPDATE meta SET value = "
                              f"'{SCHEMA_VERSION}' WHERE key = 'schema'; COMMIT;")

    @property
    def course(self) -> store.Course:
        """The course's tables in this gradebook (roster, deadlines, overrides)."""
        return store.Course(self.db)

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
                "INSERT INTO submissions (student, name, path, sha256, submitted_at, submitted_how, marked_late,"
                " lms_key, code_sha256, fingerprints) VALUES (?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(student) DO UPDATE SET name = excluded.name, path = excluded.path,"
                " sha256 = excluded.sha256, submitted_at = excluded.submitted_at,"
                " submitted_how = excluded.submitted_how, marked_late = excluded.marked_late,"
                " lms_key = excluded.lms_key, code_sha256 = excluded.code_sha256,"
                " fingerprints = excluded.fingerprints",
                (r.student, r.name, r.path, r.sha256, *astuple(r.provenance)))
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
             " r.penalties, r.duration_s, r.seed, r.report, s.submitted_at, s.submitted_how, s.marked_late,"
             " s.lms_key, s.code_sha256, s.fingerprints FROM submissions s"
             " JOIN runs r ON r.submission_id = s.id AND r.current = 1 ORDER BY s.student")
        try:
            rows = self.db.execute(q).fetchall()
        except sqlite3.DatabaseError as e:
            raise GraderError(f"{self.path}: not a usable gradebook ({e})") from None
        for row in rows:
            yield Row(*row[:11], json.loads(row[11]), Provenance(row[12], row[13], bool(row[14]), *row[15:]))

    def counts(self) -> dict[str, int]:
        """How many submissions' current runs are graded, errors and timeouts."""
        rows = self.db.execute("SELECT status, count(*) FROM runs WHERE current = 1 GROUP BY status")
        return {status: n for status, n in rows}


def now() -> float:
    """Wall-clock time for the runs table (seconds since the epoch)."""
    return time.time()
