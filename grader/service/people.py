"""Who may use the service: the roster imported (grader.course.roster reads it), each student's
access token made and shown once (the database keeps its hash), instructors added.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from grader.course.late import parse_duration
from grader.course.roster import read_roster
from grader.errors import GraderError
from grader.service import auth
from grader.service.store import Store, User

USER_ID = re.compile(r"^[A-Za-z0-9._@+-]{1,100}$")


@dataclass
class Issued:
    """A token just made: shown to the instructor once, never stored in clear."""

    user: str
    name: str
    token: str

    def link(self, base: str) -> str:
        # the token after `#`: a browser never sends it to the server in a URL (no log keeps it)
        return f"{base.rstrip('/')}/login#{self.token}"


def _expiry(expires: str | None) -> float | None:
    return time.time() + parse_duration(expires) if expires else None


def issue(store: Store, user_id: str, expires: str | None = None) -> Issued:
    """A new token for a user (their earlier ones stop working)."""
    user = store.user(user_id)
    if user is None:
        raise GraderError(f"no user {user_id!r} (import the roster, or add the instructor)")
    token = auth.new_token()
    store.add_token(user_id, auth.token_hash(token), _expiry(expires))
    return Issued(user_id, user.name, token)


def import_roster(store: Store, path: Path, fmt: str | None = None, expires: str | None = None) -> list[Issued]:
    """Add the roster's students (and update their names); a token for each new one. A student
    no longer on the roster can no longer log in (their attempts stay)."""
    students = read_roster(path, fmt)
    for s in students:
        if not USER_ID.match(s.id):
            raise GraderError(f"{path}: student id {s.id!r} has characters an id cannot have")
    listed = {s.id for s in students}
    issued = []
    for s in students:
        store.put_user(User(s.id, s.name, s.email, s.section, "student", True))
        if not store.has_token(s.id):
            issued.append(issue(store, s.id, expires))
    for u in store.users("student"):
        if u.id not in listed and u.active:
            store.put_user(User(u.id, u.name, u.email, u.section, "student", False))
    return issued


def add_instructor(store: Store, user_id: str, name: str = "", expires: str | None = None) -> Issued:
    """An instructor (or TA) and their token."""
    if not USER_ID.match(user_id):
        raise GraderError(f"{user_id!r} is not a user id (letters, digits and . _ @ + -)")
    existing = store.user(user_id)
    if existing is not None and existing.role != "instructor":
        raise GraderError(f"{user_id} is a student on the roster")
    store.put_user(User(user_id, name, "", "", "instructor", True))
    return issue(store, user_id, expires)
