"""The LTI 1.3 tables of the service's database: registered platforms, the tool's own keys,
login states and used nonces (each with an expiry), resource links mapped to assignments,
what each LMS user launched from, the courses' membership (NRPS) addresses, and the grade
passbacks (a durable outbox).

They live beside the service's own tables (grader.service.store) in the same database and
are created on first use (empty until a platform is registered).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from grader.errors import GraderError
from grader.service.store import Store

KEY_GRACE_S = 7 * 86400  # a rotated-out key stays in the JWKS this long (tokens signed before still verify)
STATE_S = 600  # a login's state and nonce are good for ten minutes
NONCE_KEEP_S = 86400  # used nonces are remembered a day (far longer than any id_token lives)

_DDL = """
CREATE TABLE IF NOT EXISTS lti_platforms (
    id INTEGER PRIMARY KEY,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    auth_login_url TEXT NOT NULL,
    auth_token_url TEXT NOT NULL,
    keyset_url TEXT NOT NULL,
    UNIQUE (issuer, client_id, deployment_id)
);
CREATE TABLE IF NOT EXISTS lti_keys (
    kid TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created REAL NOT NULL,
    retired REAL
);
CREATE TABLE IF NOT EXISTS lti_states (
    state TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    platform_id INTEGER NOT NULL REFERENCES lti_platforms(id),
    expires REAL NOT NULL,
    params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lti_nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lti_links (
    platform_id INTEGER NOT NULL REFERENCES lti_platforms(id),
    resource_link_id TEXT NOT NULL,
    assignment TEXT NOT NULL,
    PRIMARY KEY (platform_id, resource_link_id)
);
CREATE TABLE IF NOT EXISTS lti_members (
    user_id TEXT NOT NULL,
    assignment TEXT NOT NULL,
    platform_id INTEGER NOT NULL REFERENCES lti_platforms(id),
    sub TEXT NOT NULL,
    lineitems TEXT NOT NULL DEFAULT '',
    lineitem TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (user_id, assignment)
);
CREATE TABLE IF NOT EXISTS lti_rosters (
    platform_id INTEGER NOT NULL REFERENCES lti_platforms(id),
    context_id TEXT NOT NULL,
    memberships_url TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    synced REAL,
    PRIMARY KEY (platform_id, context_id)
);
CREATE TABLE IF NOT EXISTS lti_passbacks (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL UNIQUE REFERENCES jobs(id),
    user_id TEXT NOT NULL,
    assignment TEXT NOT NULL,
    score TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    tries INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS lti_passbacks_due ON lti_passbacks(state, next_try);
"""


@dataclass
class Platform:
    id: int
    issuer: str
    client_id: str
    deployment_id: str
    auth_login_url: str
    auth_token_url: str
    keyset_url: str


@dataclass
class Member:
    """Where an LMS user's grade for one assignment goes."""

    user_id: str
    assignment: str
    platform_id: int
    sub: str
    lineitems: str
    lineitem: str
    scopes: str


@dataclass
class Passback:
    id: int
    job_id: int
    user_id: str
    assignment: str
    score: dict[str, Any]
    state: str
    tries: int
    next_try: float
    error: str
    sent_at: float | None


class LtiStore:
    """The LTI tables over a service Store's connection."""

    def __init__(self, store: Store):
        self.store, self.db = store, store.db
        self.db.create(_DDL, "lti")

    # ------------------------------------------------------------ platforms

    def add_platform(self, issuer: str, client_id: str, deployment_id: str, auth_login_url: str,
                     auth_token_url: str, keyset_url: str) -> int:
        for name, url in (("--auth-login-url", auth_login_url), ("--auth-token-url", auth_token_url),
                          ("--keyset-url", keyset_url)):
            if not url.startswith(("https://", "http://")):
                raise GraderError(f"{name}: {url!r} is not an http(s) address")
        if not (issuer and client_id and deployment_id):
            raise GraderError("the issuer, client id and deployment id must not be empty")
        try:
            with self.store.transaction() as db:
                return db.insert("INSERT INTO lti_platforms (issuer, client_id, deployment_id, auth_login_url,"
                                 " auth_token_url, keyset_url) VALUES (?,?,?,?,?,?)",
                                 (issuer, client_id, deployment_id, auth_login_url, auth_token_url, keyset_url))
        except self.db.IntegrityError:
            raise GraderError(f"platform {issuer} (client {client_id}, deployment {deployment_id}) is already "
                              "registered") from None

    _P = "SELECT id, issuer, client_id, deployment_id, auth_login_url, auth_token_url, keyset_url FROM lti_platforms"

    def platforms(self, issuer: str | None = None, client_id: str | None = None) -> list[Platform]:
        where, args = ["1 = 1"], []
        for col, v in (("issuer", issuer), ("client_id", client_id)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        return [Platform(*r) for r in self.db.execute(f"{self._P} WHERE {' AND '.join(where)} ORDER BY id", args)]

    def platform(self, pid: int) -> Platform | None:
        row = self.db.execute(f"{self._P} WHERE id = ?", (pid,)).fetchone()
        return Platform(*row) if row else None

    # ------------------------------------------------------------ the tool's keys

    def keys(self, now: float | None = None) -> list[tuple[str, str, float | None]]:
        """(kid, private PEM, retired) of every key still published, newest first."""
        cutoff = (now or time.time()) - KEY_GRACE_S
        return list(self.db.execute("SELECT kid, private_pem, retired FROM lti_keys WHERE retired IS NULL"
                                    " OR retired > ? ORDER BY created DESC", (cutoff,)))

    def add_key(self, kid: str, pem: str, retire_others: bool) -> None:
        with self.store.transaction() as db:
            if retire_others:
                db.execute("UPDATE lti_keys SET retired = ? WHERE retired IS NULL", (time.time(),))
            db.execute("INSERT INTO lti_keys VALUES (?, ?, ?, NULL)", (kid, pem, time.time()))

    # ------------------------------------------------------------ states and nonces

    def add_state(self, state: str, nonce: str, platform_id: int, params: dict[str, str]) -> None:
        t = time.time()
        with self.store.transaction() as db:
            db.execute("DELETE FROM lti_states WHERE expires < ?", (t,))
            db.execute("INSERT INTO lti_states VALUES (?,?,?,?,?)", (state, nonce, platform_id, t + STATE_S,
                                                                   json.dumps(params)))

    def state(self, state: str) -> tuple[str, int, dict[str, str]] | None:
        """(nonce, platform id, login parameters) of an unexpired state, else None."""
        row = self.db.execute("SELECT nonce, platform_id, params FROM lti_states WHERE state = ? AND expires >= ?",
                              (state, time.time())).fetchone()
        return (row[0], row[1], json.loads(row[2])) if row else None

    def use_nonce(self, state: str, nonce: str, expires: float) -> bool:
        """Spend a launch's state and nonce: False when the nonce was used already (a replay)."""
        t = time.time()
        try:
            with self.store.transaction() as db:
                db.execute("DELETE FROM lti_nonces WHERE expires < ?", (t,))
                db.execute("DELETE FROM lti_states WHERE state = ?", (state,))
                db.execute("INSERT INTO lti_nonces VALUES (?, ?)", (nonce, max(expires, t) + NONCE_KEEP_S))
        except self.db.IntegrityError:
            return False
        return True

    # ------------------------------------------------------------ links and members

    def link(self, platform_id: int, resource_link_id: str) -> str | None:
        row = self.db.execute("SELECT assignment FROM lti_links WHERE platform_id = ? AND resource_link_id = ?",
                              (platform_id, resource_link_id)).fetchone()
        return row[0] if row else None

    def set_link(self, platform_id: int, resource_link_id: str, assignment: str) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO lti_links VALUES (?,?,?) ON CONFLICT (platform_id, resource_link_id) DO UPDATE"
                       " SET assignment = excluded.assignment", (platform_id, resource_link_id, assignment))

    def set_member(self, m: Member) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO lti_members VALUES (?,?,?,?,?,?,?) ON CONFLICT (user_id, assignment) DO UPDATE"
                       " SET platform_id = excluded.platform_id, sub = excluded.sub, lineitems = excluded.lineitems,"
                       " lineitem = excluded.lineitem, scopes = excluded.scopes",
                       (m.user_id, m.assignment, m.platform_id, m.sub, m.lineitems, m.lineitem, m.scopes))

    def member(self, user_id: str, assignment: str) -> Member | None:
        row = self.db.execute("SELECT * FROM lti_members WHERE user_id = ? AND assignment = ?",
                              (user_id, assignment)).fetchone()
        return Member(*row) if row else None

    def members(self) -> list[Member]:
        return [Member(*r) for r in self.db.execute("SELECT * FROM lti_members ORDER BY user_id, assignment")]

    def set_lineitem(self, platform_id: int, lineitems: str, assignment: str, lineitem: str) -> None:
        """Remember the line item found or created for an assignment (for every member it concerns)."""
        with self.store.transaction() as db:
            db.execute("UPDATE lti_members SET lineitem = ? WHERE platform_id = ? AND lineitems = ? AND"
                       " assignment = ? AND lineitem = ''", (lineitem, platform_id, lineitems, assignment))

    # ------------------------------------------------------------ rosters (NRPS)

    def set_roster(self, platform_id: int, context_id: str, url: str, title: str) -> None:
        with self.store.transaction() as db:
            db.execute("INSERT INTO lti_rosters (platform_id, context_id, memberships_url, title) VALUES (?,?,?,?)"
                       " ON CONFLICT (platform_id, context_id) DO UPDATE SET memberships_url = excluded.memberships_url,"
                       " title = excluded.title", (platform_id, context_id, url, title))

    def rosters(self) -> list[tuple[int, str, str, str]]:
        """(platform id, context id, memberships URL, course title) of every course seen."""
        return list(self.db.execute("SELECT platform_id, context_id, memberships_url, title FROM lti_rosters"
                                    " ORDER BY platform_id, context_id"))

    def roster_synced(self, platform_id: int, context_id: str) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE lti_rosters SET synced = ? WHERE platform_id = ? AND context_id = ?",
                       (time.time(), platform_id, context_id))

    # ------------------------------------------------------------ passbacks

    def queue_passback(self, job_id: int, user_id: str, assignment: str, score: dict[str, Any]) -> bool:
        """Queue a result's score once (a second call for the same result does nothing)."""
        with self.store.transaction() as db:
            return bool(db.execute("INSERT INTO lti_passbacks (job_id, user_id, assignment, score, state, next_try)"
                                   " VALUES (?,?,?,?,'pending',?) ON CONFLICT DO NOTHING",
                                   (job_id, user_id, assignment, json.dumps(score), time.time())).rowcount)

    def known_jobs(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT job_id FROM lti_passbacks")}

    _PB = ("SELECT id, job_id, user_id, assignment, score, state, tries, next_try, error, sent_at"
           " FROM lti_passbacks")

    def passbacks(self, assignment: str | None = None, due: float | None = None) -> list[Passback]:
        if due is not None:
            rows = self.db.execute(f"{self._PB} WHERE state = 'pending' AND next_try <= ? ORDER BY id", (due,))
        elif assignment is not None:
            rows = self.db.execute(f"{self._PB} WHERE assignment = ? ORDER BY id", (assignment,))
        else:
            rows = self.db.execute(f"{self._PB} ORDER BY id")
        return [Passback(*r[:4], json.loads(r[4]), *r[5:]) for r in rows]

    def passback_done(self, pid: int) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE lti_passbacks SET state = 'sent', tries = tries + 1, error = '', sent_at = ?"
                       " WHERE id = ? AND state = 'pending'", (time.time(), pid))

    def passback_failed(self, pid: int, error: str, next_try: float | None) -> None:
        """A failed try: retried at `next_try`, or given up (None: state 'failed')."""
        with self.store.transaction() as db:
            db.execute("UPDATE lti_passbacks SET tries = tries + 1, error = ?, state = ?, next_try = ?"
                       " WHERE id = ? AND state = 'pending'",
                       (error[:500], "pending" if next_try is not None else "failed", next_try or 0.0, pid))


CONFIG_KEYS = ("issuer", "client_id", "deployment_id", "auth_login_url", "auth_token_url", "keyset_url")


def platforms_from_config(store: Store, path: Path | None) -> int:
    """Register the `[[lti.platform]]` tables of the service's config (TOML) that are not yet
    registered (each start: the file may gain one); how many were new. GraderError, one line,
    for a table that is not complete."""
    if path is None:
        return 0
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise GraderError(f"{path}: cannot be read as TOML ({e})") from None
    section = raw.get("lti") or {}
    tables = section.get("platform") or [] if isinstance(section, dict) else None
    if not isinstance(tables, list):
        raise GraderError(f"{path}: [[lti.platform]] must be an array of tables")
    lti, new = LtiStore(store), 0
    for i, t in enumerate(tables, 1):
        missing = [k for k in CONFIG_KEYS if not isinstance(t, dict) or not str(t.get(k) or "").strip()]
        if missing:
            raise GraderError(f"{path}: [[lti.platform]] number {i} lacks {', '.join(missing)}")
        unknown = sorted(set(t) - set(CONFIG_KEYS))
        if unknown:
            raise GraderError(f"{path}: [[lti.platform]] number {i}: unknown key {unknown[0]!r}")
        if any(p.deployment_id == str(t["deployment_id"]) for p in lti.platforms(str(t["issuer"]),
                                                                              str(t["client_id"]))):
            continue
        lti.add_platform(*(str(t[k]).strip() for k in CONFIG_KEYS))
        new += 1
    return new
