"""What the service does, apart from HTTP: accept a submission (or refuse it in one line),
say where it stands, show its feedback, and the class views an instructor sees.

The feedback, the dashboard and the exports are the batch's own (grader.batch.reports,
classreport, grader.course.exports), fed with rows built from the service's attempts, so a
student reads here exactly what `grade batch` would give them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.batch.gradebook import Provenance, Row
from grader.course.late import show_time
from grader.course.roster import Student
from grader.errors import SubmissionError
from grader.service.policy import Policy
from grader.service.store import Attempt, Store, User

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class Refused(Exception):
    """A request the service refuses: an HTTP status and one line saying why."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class Service:
    """The served assignments, their policies, and the database."""

    store: Store
    policies: dict[str, Policy]
    key: str
    sources: dict[str, str] = field(default_factory=dict)  # id -> the id or folder `grade serve` was given
    _code: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)

    @property
    def assignments(self) -> list[str]:
        return list(self.policies)

    def policy(self, assignment: str) -> Policy:
        if assignment not in self.policies:
            raise Refused(404, f"no assignment {assignment!r} here (this service grades "
                               f"{', '.join(self.policies)})")
        return self.policies[assignment]

    def check_upload(self, user: User, assignment: str, filename: str, data: bytes, now: float) -> None:
        """Refuse (Refused) what cannot be accepted: closed, rate-limited, too big, a zip."""
        p = self.policy(assignment)
        if user.role != "student":
            raise Refused(403, "only students hand in notebooks")
        if p.opens is not None and now < p.opens:
            raise Refused(403, f"{assignment} opens at {show_time(p.opens)}")
        self.check_limit(p, self.store.recent_attempts(user.id, assignment, now - p.window_s), now)
        if len(data) > p.max_upload:
            raise Refused(413, f"{filename}: {len(data)} bytes, over the limit of {p.max_upload} bytes")
        if data[:4] in ZIP_MAGIC:
            raise Refused(400, f"{filename}: a zip archive, not a notebook: upload the .ipynb file itself")

    @staticmethod
    def check_limit(p: Policy, recent: list[float], now: float) -> None:
        """Refuse (429) a submission past the limit, saying when the next one is allowed."""
        nxt = p.next_allowed(recent, now)
        if nxt is not None:
            raise Refused(429, f"at most {p.max_submissions} submissions per {p.window_s / 3600:g} h: the next one "
                               f"is allowed at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(nxt))}",
                          retry_after=nxt - now)

    @staticmethod
    def check_notebook(filename: str, data: bytes) -> None:
        """Refuse what is not a notebook (run in a thread: parsing a large one takes a while)."""
        from grader.submission.notebook import parse_notebook

        try:
            parse_notebook(data, filename)
        except SubmissionError as e:
            raise Refused(400, str(e)) from None

    async def accept(self, user: User, assignment: str, filename: str, data: bytes) -> int:
        """Store an accepted notebook durably and queue it: its attempt id. The file is written
        and fsynced in a thread (the server keeps answering meanwhile), the row on the loop's
        thread, as every other use of the database in the server."""
        from starlette.concurrency import run_in_threadpool

        sha = hashlib.sha256(data).hexdigest()
        await run_in_threadpool(self.store.save_file, sha, data)
        p = self.policy(assignment)
        return self.store.add_attempt(user.id, assignment, safe_filename(filename), sha, data,
                                      lambda recent, now: self.check_limit(p, recent, now), p.window_s)

    def visible_attempt(self, user: User, attempt_id: int, with_report: bool = True) -> Attempt:
        """An attempt this user may see (their own; any of their assignments', for an
        instructor), else 404 alike whether it exists or not."""
        a = self.store.attempt(attempt_id, with_report)
        if a is None or (a.user_id != user.id and not self.store.teaches(user, a.assignment)):
            raise Refused(404, f"no submission {attempt_id}")
        return a

    def counted(self, attempts: list[Attempt], assignment: str, state: dict[str, Any] | None = None) -> Attempt | None:
        """The attempt that counts (the policy's last or best) among one student's attempts."""
        done = [a for a in attempts if a.status is not None]
        if not done:
            return None
        if self.policy(assignment).counts == "best":
            state = state or self.state(assignment)  # (read once, not once per attempt)
            return max(done, key=lambda a: (self.final_of(a, state), a.id))
        return done[-1]

    def final_of(self, a: Attempt, state: dict[str, Any] | None = None) -> float:
        g = self.grade(a, state)
        return g.final if g.final is not None else 0.0

    def state(self, assignment: str) -> dict[str, Any]:
        """The course state grader.course.grades reads: roster, due date, late policy."""
        p = self.policy(assignment)
        roster = {u.id: (Student(u.id, u.name, u.email, u.section), "active" if u.active else "dropped")
                  for u in self.store.users("student")}
        return {"roster": roster, "due": p.due, "policy": p.late, "extensions": self.store.extensions(assignment),
                "overrides": {}}

    def row(self, a: Attempt, code: bool = False) -> Row:
        """The attempt as a gradebook row, for the batch's renderers (with its code's hash and
        fingerprints if `code`, for the similarity of the class views)."""
        user = self.store.user(a.user_id)
        report = a.report if a.report is not None else (self.store.attempt(a.id, True).report or {})
        prov = Provenance(a.submitted_at, "uploaded to the service")
        if code:
            prov.code_sha256, prov.fingerprints = self.code(a)
        return Row(a.user_id, user.name if user else "", a.filename, a.sha256, a.status or "error", a.reason,
                   a.score or 0.0, a.max_score or 0.0, a.penalties, a.duration_s, a.seed, report, prov)

    def code(self, a: Attempt) -> tuple[str, str]:
        """The normalised code's hash and fingerprints of an attempt's notebook (kept by content)."""
        from grader.course import similarity

        if a.sha256 not in self._code:
            try:
                code = similarity.code_of(self.store.notebook(a.stored))
                self._code[a.sha256] = (similarity.code_hash(code), similarity.encode(similarity.fingerprints(code)))
            except OSError:
                self._code[a.sha256] = ("", "")
        return self._code[a.sha256]

    def starter(self, assignment: str) -> tuple[str, set[int]] | None:
        """The starter notebook's code (never counted as similar), if the assignment has one."""
        from grader.assignment.load import find_assignment
        from grader.course import similarity

        try:
            data = find_assignment(self.sources.get(assignment, assignment)).path("starter.ipynb").read_bytes()
        except Exception:  # (no starter, or the assignment moved: nothing to leave out)
            return None
        code = similarity.code_of(data)
        return similarity.code_hash(code), similarity.fingerprints(code)

    def grade(self, a: Attempt, state: dict[str, Any] | None = None) -> Any:
        from grader.course.grades import grade_of

        row = self.row(a)
        return grade_of(row, state or self.state(a.assignment), row.max_score)

    def feedback_html(self, a: Attempt) -> str:
        """The batch's feedback page of one finished attempt (hidden checks show nothing)."""
        from grader.batch.reports import feedback_html

        return feedback_html(self.row(a), self.grade(a))

    def student_report(self, a: Attempt) -> dict[str, Any]:
        """The attempt's report as a student may see it: hidden checks' details gone, no traceback."""
        from grader.render.json import render_json
        from grader.report import report_from_dict

        rep = dict(a.report or {})
        rep.pop("error_traceback", None)
        rep["assignment"] = {k: v for k, v in (rep.get("assignment") or {}).items() if k != "folder"}  # (the server's paths)
        report = report_from_dict(rep)
        for c in report.checks:
            if c.visibility == "hidden":
                c.detail = {}
        return json.loads(render_json(report))

    def class_rows(self, assignment: str) -> tuple[list[Row], dict[str, list[Attempt]], dict[str, int | None]]:
        """Each student's counted attempt as a row; every attempt by student; counted ids."""
        by: dict[str, list[Attempt]] = {}
        for a in self.store.attempts(assignment=assignment, with_report=True):
            by.setdefault(a.user_id, []).append(a)
        rows, counted = [], {}
        state = self.state(assignment)
        for uid, mine in sorted(by.items()):
            c = self.counted(mine, assignment, state)
            counted[uid] = c.id if c else None
            if c is not None:
                rows.append(self.row(c, code=True))
        return rows, by, counted

    def view(self, assignment: str) -> Any:
        from grader.batch.classview import view_of

        rows, _, _ = self.class_rows(assignment)
        return view_of(rows, self.state(assignment), self.starter(assignment))

    def dashboard_html(self, assignment: str) -> tuple[str, dict[str, str]]:
        """The batch's report.html of the counted attempts, and student -> feedback page name."""
        from grader.batch.classreport import report_html
        from grader.batch.reports import feedback_names

        view = self.view(assignment)
        names = feedback_names(view)
        return report_html(view, names), names

    def export(self, assignment: str, fmt: str, column: str | None) -> tuple[str, str]:
        """(file name, CSV text) of the class's grades: grades.csv, Canvas or Moodle."""
        from grader.batch.reports import grades_csv
        from grader.course.exports import canvas_csv, moodle_csv

        view = self.view(assignment)
        if fmt == "canvas":
            try:
                return f"{assignment}-canvas.csv", canvas_csv(view.grades, column or f"{assignment} (0)")
            except Exception as e:
                raise Refused(400, str(e)) from None
        if fmt == "moodle":
            return f"{assignment}-moodle.csv", moodle_csv(view.grades)
        if fmt != "grades":
            raise Refused(400, f"unknown export format {fmt!r} (grades, canvas or moodle)")
        return f"{assignment}-grades.csv", grades_csv(view.rows, view)


def safe_filename(name: str) -> str:
    """The uploaded file's base name, as the pages show it (never a path)."""
    base = Path(name.replace("\\", "/")).name.strip() or "notebook.ipynb"
    return "".join(ch for ch in base if ch.isprintable())[:200] or "notebook.ipynb"
