"""The service's database: one SQLite file (WAL, synchronous=FULL), or a PostgreSQL database
shared by several web and worker processes (grader.service.database), holding its users, their
tokens (hashed), every attempt, the queue of grading jobs and every result.

The queue is the `jobs` table: a job is claimed by one worker (its `lease`) in a transaction,
and its result is committed in the same transaction that marks it done, only while the lease
still holds; so a worker killed mid-job, or one left running by a killed server, can never
record a result twice. On PostgreSQL a job is taken with `FOR UPDATE SKIP LOCKED`: workers on
several hosts share the queue and none takes a job another holds.

A worker holds a lease, registered in `workers` with its host and process and renewed every
few seconds (its heartbeat). A job held by a lease that is gone (its process ended on this
host, or its heartbeat stopped for STALE_S) goes back to the queue once, then it is an `error`
row: whichever process of the service looks first (any worker, any server) takes it back.

A regrade adds a new job (the next `round`) for an attempt: the old
result stays beside the new one, and the newest finished round is the attempt's result.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.service.database import Database, connect, shown

SCHEMA = "service/1"
MAX_TRIES = 2  # a job whose worker died is queued once more at most, then it is an error row
BEAT_S = 2.0  # a worker renews its lease this often
STALE_S = float(os.environ.get("NNGRADER_LEASE_STALE_S", "30"))  # a lease not renewed this long is gone
HOST = socket.gethostname()

_DDL = """
CREATE TABLE IF NOT EXISTS service_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    section TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('student', 'instructor')),
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created REAL NOT NULL,
    expires REAL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    assignment TEXT NOT NULL,
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    stored TEXT NOT NULL,
    submitted_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_user ON attempts(user_id, assignment, submitted_at);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    attempt_id INTEGER NOT NULL REFERENCES attempts(id),
    round INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'grading', 'done')),
    tries INTEGER NOT NULL DEFAULT 0,
    lease TEXT NOT NULL DEFAULT '',
    queued_at REAL NOT NULL,
    started REAL,
    UNIQUE (attempt_id, round)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, id);
CREATE TABLE IF NOT EXISTS extensions (
    user_id TEXT NOT NULL REFERENCES users(id),
    assignment TEXT NOT NULL,
    due REAL NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    PRIMARY KEY (user_id, assignment)
);
CREATE TABLE IF NOT EXISTS grants (
    user_id TEXT NOT NULL REFERENCES users(id),
    assignment TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('student', 'instructor')),
    PRIMARY KEY (user_id, assignment)
);
CREATE TABLE IF NOT EXISTS workers (
    lease TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    beat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    job_id INTEGER PRIMARY KEY REFERENCES jobs(id),
    status TEXT NOT NULL CHECK (status IN ('graded', 'error', 'timeout')),
    reason TEXT NOT NULL DEFAULT '',
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    penalties REAL NOT NULL,
    spec_sha256 TEXT NOT NULL DEFAULT '',
    seed INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    report TEXT NOT NULL
);
"""
# On PostgreSQL the notebooks live in the database too: every host reads them from there.
_NOTEBOOKS = "CREATE TABLE IF NOT EXISTS notebooks (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);"


@dataclass
class User:
    id: str
    name: str
    email: str
    section: str
    role: str
    active: bool


@dataclass
class Attempt:
    """An attempt and its newest job (state) and newest finished result, if any."""

    id: int
    user_id: str
    assignment: str
    filename: str
    sha256: str
    size: int
    stored: str
    submitted_at: float
    state: str  # queued | grading | done (the newest round's)
    round: int
    status: str | None = None  # the newest finished round's result
    reason: str = ""
    score: float | None = None
    max_score: float | None = None
    penalties: float = 0.0
    seed: int = 0
    duration_s: float = 0.0
    report: dict[str, Any] | None = None


@dataclass
class Claimed:
    """A job a worker holds: what to grade."""

    job_id: int
    attempt_id: int
    assignment: str
    filename: str
    sha256: str
    stored: str


def fsync_write(path: Path, data: bytes) -> None:
    """Write a file whole and durably: its bytes and its name are on disk when this returns."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Store:
    """The service's database (one connection per process, shared by its threads)."""

    def __init__(self, db: Path | str):
        self.db: Database = connect(db)
        self.path = db
        try:
            names = self.db.names()
            if names and "service_meta" not in names:
                raise GraderError(f"{shown(db)}: not a database this service wrote")
            extra = _NOTEBOOKS if self.db.dialect == "postgresql" else ""
            self.db.create(f"{_DDL} {extra} INSERT INTO service_meta VALUES ('schema', '{SCHEMA}')"
                           " ON CONFLICT DO NOTHING;", "service")
            if self.meta("schema") != SCHEMA:
                raise GraderError(f"{shown(db)}: written by another version of the service")
        except GraderError:
            self.db.close()
            raise
        except Exception as e:
            self.db.close()
            if type(e).__module__.split(".")[0] in ("sqlite3", "psycopg"):
                raise GraderError(f"{shown(db)}: not a usable database ({e})") from None
            raise
        self.lock = self.db.lock
        # the uploaded notebooks, by content hash: files beside a SQLite database, rows in PostgreSQL
        self.files: Path | None = None
        if self.db.dialect == "sqlite":
            self.files = Path(f"{db}.files")
            self.files.mkdir(mode=0o700, exist_ok=True)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One write transaction, rolled back on any error."""
        with self.db.transaction() as db:
            yield db

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM service_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO service_meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                        " value = excluded.value", (key, value))

    def meta_default(self, key: str, make: Any) -> str:
        """A setting kept from the first start (the session key, the seed), made once."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM service_meta WHERE key = ?", (key,)).fetchone()
            if row:
                return row[0]
            value = str(make())
            db.execute("INSERT INTO service_meta VALUES (?, ?) ON CONFLICT DO NOTHING", (key, value))
        return self.meta(key) or value  # (another process made it first: theirs is kept)

    # ------------------------------------------------------------ users and tokens

    def put_user(self, user: User) -> bool:
        """Add or update a user; True when they are new."""
        with self.transaction() as db:
            new = db.execute("SELECT 1 FROM users WHERE id = ?", (user.id,)).fetchone() is None
            db.execute("INSERT INTO users VALUES (?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET name = excluded.name,"
                       " email = excluded.email, section = excluded.section, role = excluded.role,"
                       " active = excluded.active",
                       (user.id, user.name, user.email, user.section, user.role, int(user.active)))
        return new

    def user(self, user_id: str) -> User | None:
        row = self.db.execute("SELECT id, name, email, section, role, active FROM users WHERE id = ?",
                              (user_id,)).fetchone()
        return User(*row[:5], bool(row[5])) if row else None

    def users(self, role: str | None = None) -> list[User]:
        rows = self.db.execute("SELECT id, name, email, section, role, active FROM users"
                               + (" WHERE role = ?" if role else "") + " ORDER BY id", (role,) if role else ())
        return [User(*r[:5], bool(r[5])) for r in rows]

    def grant(self, user_id: str, assignment: str, role: str) -> None:
        """A user's role on one assignment (an LTI launch says it, course by course)."""
        self.db.execute("INSERT INTO grants VALUES (?,?,?) ON CONFLICT (user_id, assignment) DO UPDATE SET"
                        " role = excluded.role", (user_id, assignment, role))

    def teaches(self, user: User, assignment: str) -> bool:
        """Whether an instructor's rights reach this assignment: everywhere for an instructor
        the service made (roster, command line), only where a launch said so for one the LMS
        made (an instructor of one course may be a student of another)."""
        if user.role != "instructor":
            return False
        roles = dict(self.db.execute("SELECT assignment, role FROM grants WHERE user_id = ?", (user.id,)).fetchall())
        return not roles or roles.get(assignment) == "instructor"

    def has_token(self, user_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM tokens WHERE user_id = ? AND revoked = 0",
                               (user_id,)).fetchone() is not None

    def add_token(self, user_id: str, token_hash: str, expires: float | None, replace: bool = True) -> None:
        """Store a token's hash; `replace` revokes the user's earlier tokens."""
        with self.transaction() as db:
            if replace:
                db.execute("UPDATE tokens SET revoked = 1 WHERE user_id = ?", (user_id,))
            db.execute("INSERT INTO tokens VALUES (?,?,?,?,0)", (token_hash, user_id, time.time(), expires))

    def token_user(self, token_hash: str) -> tuple[User | None, str]:
        """The user a token's hash belongs to, or None and why not (unknown, revoked, expired)."""
        row = self.db.execute("SELECT user_id, expires, revoked FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None, "unknown access token"
        if row[2]:
            return None, "this access token was replaced by a newer one"
        if row[1] is not None and row[1] < time.time():
            return None, "this access token has expired: ask your instructor for a new link"
        user = self.user(row[0])
        if user is None or not user.active:
            return None, "this account is not active"
        return user, ""

    def extend(self, user_id: str, assignment: str, due: float, comment: str) -> None:
        """A student's own due date for one assignment (replacing an earlier one)."""
        with self.transaction() as db:
            db.execute("INSERT INTO extensions VALUES (?,?,?,?,?) ON CONFLICT (user_id, assignment) DO UPDATE SET"
                       " due = excluded.due, comment = excluded.comment, at = excluded.at",
                       (user_id, assignment, due, comment, time.time()))

    def extensions(self, assignment: str) -> dict[str, tuple[float, str]]:
        """student -> (due, comment) for one assignment, as grader.course.grades reads them."""
        rows = self.db.execute("SELECT user_id, due, comment FROM extensions WHERE assignment = ?", (assignment,))
        return {u: (due, comment) for u, due, comment in rows}

    # ------------------------------------------------------------ attempts and the queue

    def save_file(self, sha256: str, data: bytes) -> str:
        """The notebook's bytes stored durably (once per content): fsynced on disk beside a SQLite
        database, a committed row in PostgreSQL. Returns the name it is stored under."""
        name = f"{sha256}.ipynb"
        if self.files is None:
            self.db.execute("INSERT INTO notebooks VALUES (?, ?) ON CONFLICT DO NOTHING", (name, data))
        elif not (self.files / name).exists():  # (written whole or not at all: os.replace)
            fsync_write(self.files / name, data)
        return name

    def notebook(self, stored: str) -> bytes:
        """A stored notebook's bytes (OSError when it is gone)."""
        if self.files is not None:
            return (self.files / stored).read_bytes()
        row = self.db.execute("SELECT data FROM notebooks WHERE sha256 = ?", (stored,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"notebook {stored} is not in the database")
        return bytes(row[0])

    def add_attempt(self, user_id: str, assignment: str, filename: str, sha256: str, data: bytes,
                    check: Callable[[list[float], float], None] | None = None, window_s: float = 0.0) -> int:
        """Store the notebook (fsync) then its attempt and first job (one transaction): when
        this returns, the submission survives a crash. `check(recent, now)`, given the times of
        this user's attempts in the last `window_s`, may refuse it (by raising) inside the same
        transaction, so two uploads at once cannot both pass a submission limit."""
        stored = self.save_file(sha256, data)
        t = time.time()
        with self.transaction() as db:
            if check is not None:
                db.lock_row("users", "id", user_id)  # (two uploads of one student: one checks after the other)
                check(self.recent_attempts(user_id, assignment, t - window_s), t)
            aid = db.insert("INSERT INTO attempts (user_id, assignment, filename, sha256, size, stored, submitted_at)"
                            " VALUES (?,?,?,?,?,?,?)", (user_id, assignment, filename, sha256, len(data), stored, t))
            db.execute("INSERT INTO jobs (attempt_id, round, state, queued_at) VALUES (?, 1, 'queued', ?)", (aid, t))
        return int(aid)

    def recent_attempts(self, user_id: str, assignment: str, since: float) -> list[float]:
        """Times of this user's attempts at this assignment since `since`, oldest first."""
        rows = self.db.execute("SELECT submitted_at FROM attempts WHERE user_id = ? AND assignment = ?"
                               " AND submitted_at >= ? ORDER BY submitted_at", (user_id, assignment, since))
        return [r[0] for r in rows]

    _ATTEMPT = ("SELECT a.id, a.user_id, a.assignment, a.filename, a.sha256, a.size, a.stored, a.submitted_at,"
                " j.state, j.round, r.status, r.reason, r.score, r.max_score, r.penalties, r.seed,"
                " r.finished - r.started, r.report FROM attempts a"
                " JOIN jobs j ON j.attempt_id = a.id AND j.round = (SELECT max(round) FROM jobs WHERE attempt_id = a.id)"
                " LEFT JOIN results r ON r.job_id = (SELECT r2.job_id FROM results r2 JOIN jobs j2 ON j2.id = r2.job_id"
                " WHERE j2.attempt_id = a.id ORDER BY j2.round DESC LIMIT 1)")

    def _attempts(self, where: str, args: tuple[Any, ...], with_report: bool) -> list[Attempt]:
        out = []
        for row in self.db.execute(f"{self._ATTEMPT} WHERE {where} ORDER BY a.id", args):
            report = json.loads(row[17]) if with_report and row[17] else None
            out.append(Attempt(*row[:14], row[14] or 0.0, row[15] or 0, row[16] or 0.0, report))
        return out

    def attempt(self, attempt_id: int, with_report: bool = True) -> Attempt | None:
        found = self._attempts("a.id = ?", (attempt_id,), with_report)
        return found[0] if found else None

    def attempts(self, user_id: str | None = None, assignment: str | None = None,
                 with_report: bool = False) -> list[Attempt]:
        """Attempts, oldest first, of one user and/or one assignment."""
        where, args = ["1 = 1"], []
        if user_id is not None:
            where.append("a.user_id = ?")
            args.append(user_id)
        if assignment is not None:
            where.append("a.assignment = ?")
            args.append(assignment)
        return self._attempts(" AND ".join(where), tuple(args), with_report)

    def queue_position(self, attempt_id: int) -> int | None:
        """1 for the next job to be graded; None when the attempt's newest job is not queued."""
        row = self.db.execute("SELECT id FROM jobs WHERE attempt_id = ? AND state = 'queued' ORDER BY round DESC"
                              " LIMIT 1", (attempt_id,)).fetchone()
        if row is None:
            return None
        return int(self.db.execute("SELECT count(*) FROM jobs WHERE state = 'queued' AND id <= ?",
                                   (row[0],)).fetchone()[0])

    def queue_counts(self) -> dict[str, int]:
        return {s: n for s, n in self.db.execute("SELECT state, count(*) FROM jobs GROUP BY state")}

    def regrade(self, assignment: str) -> int:
        """A new job (the next round) for every attempt at `assignment`; how many."""
        t = time.time()
        with self.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM attempts WHERE assignment = ?", (assignment,))]
            for aid in ids:
                db.execute("INSERT INTO jobs (attempt_id, round, state, queued_at) SELECT ?, max(round) + 1,"
                           " 'queued', ? FROM jobs WHERE attempt_id = ?", (aid, t, aid))
        return len(ids)

    def claim(self, lease: str) -> Claimed | None:
        """The oldest queued job, now this lease's (None when the queue is empty)."""
        if self.db.execute("SELECT 1 FROM jobs WHERE state = 'queued' LIMIT 1").fetchone() is None:
            return None  # (an idle worker's poll takes no write lock)
        with self.transaction() as db:
            row = db.execute(db.skip_locked("SELECT j.id, a.id, a.assignment, a.filename, a.sha256, a.stored"
                                            " FROM jobs j JOIN attempts a ON a.id = j.attempt_id WHERE"
                                            " j.state = 'queued' ORDER BY j.id LIMIT 1", of="j")).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'grading', lease = ?, tries = tries + 1, started = ? WHERE id = ?",
                       (lease, time.time(), row[0]))
        return Claimed(*row)

    def finish(self, job_id: int, lease: str, status: str, reason: str, report: dict[str, Any],
               started: float, finished: float, seed: int) -> bool:
        """Record a job's result, only while `lease` still holds it: False (nothing written)
        when the job was taken back from a worker presumed dead."""
        penalties = sum(f.get("points") or 0.0 for f in report.get("flags") or [])
        asg = report.get("assignment") or {}
        with self.transaction() as db:
            held = db.execute("UPDATE jobs SET state = 'done' WHERE id = ? AND state = 'grading' AND lease = ?",
                              (job_id, lease)).rowcount
            if not held:
                return False
            db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (job_id, status, reason, float(report.get("score") or 0.0),
                        float(report.get("max_score") or 0.0), float(penalties), str(asg.get("spec_sha256", "")),
                        seed, started, finished, json.dumps(report)))
        return True

    # ------------------------------------------------------------ leases (who is alive)

    def register(self, lease: str) -> None:
        """A worker's lease, alive from now on while it beats."""
        t = time.time()
        self.db.execute("INSERT INTO workers VALUES (?,?,?,?,?) ON CONFLICT (lease) DO UPDATE SET beat = excluded.beat",
                        (lease, HOST, os.getpid(), t, t))

    def beat(self, lease: str) -> None:
        """Renew a lease (registered again if it was taken for dead during a long pause: the jobs
        taken back from it are not its own any more, the rest are)."""
        if not self.db.execute("UPDATE workers SET beat = ? WHERE lease = ?", (time.time(), lease)).rowcount:
            self.register(lease)

    def release(self, lease: str) -> int:
        """A worker that stops on purpose: the jobs it holds back to the queue, the try not
        counted, and its lease gone. How many jobs."""
        with self.transaction() as db:
            n = db.execute("UPDATE jobs SET state = 'queued', lease = '', tries = tries - 1 WHERE state = 'grading'"
                           " AND lease = ?", (lease,)).rowcount
            db.execute("DELETE FROM workers WHERE lease = ?", (lease,))
        return int(n)

    @staticmethod
    def _alive(host: str, pid: int, beat: float, now: float) -> bool:
        if beat < now - STALE_S:
            return False
        if host != HOST:
            return True  # (another host's processes are judged by their heartbeat alone)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True

    def recover(self, error_report: Any = None, dead: str = "") -> tuple[int, int]:
        """Jobs held by a lease that is gone (never registered, its process ended on this host,
        its heartbeat stale, or `dead`, which the caller saw end): back to the queue if tried
        fewer than MAX_TRIES times, else an error result saying why. Returns (requeued, failed)."""
        requeued = failed = 0
        t = time.time()
        with self.transaction() as db:
            rows = db.execute("SELECT lease, host, pid, beat FROM workers").fetchall()
            live = {lease for lease, host, pid, beat in rows if lease != dead and self._alive(host, pid, beat, t)}
            for lease, *_ in rows:
                if lease not in live:
                    db.execute("DELETE FROM workers WHERE lease = ?", (lease,))
            held = db.execute(db.skip_locked("SELECT j.id, j.tries, j.lease, a.filename, a.assignment FROM jobs j"
                                             " JOIN attempts a ON a.id = j.attempt_id WHERE j.state = 'grading'",
                                             of="j")).fetchall()
            for job_id, tries, lease, filename, assignment in held:
                if lease in live:
                    continue
                if tries < MAX_TRIES:
                    db.execute("UPDATE jobs SET state = 'queued', lease = '' WHERE id = ?", (job_id,))
                    requeued += 1
                    continue
                reason = f"the grading worker stopped {tries} times while grading this notebook"
                rep = error_report(filename, reason, assignment) if error_report else {"status": "error"}
                db.execute("UPDATE jobs SET state = 'done' WHERE id = ?", (job_id,))
                db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           (job_id, "error", reason, 0.0, float(rep.get("max_score") or 0.0), 0.0, "", 0, t, t,
                            json.dumps(rep)))
                failed += 1
        return requeued, failed
