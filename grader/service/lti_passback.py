"""Grades back to the LMS by LTI Assignment and Grade Services 2.0: a durable outbox.

After every result, if the attempt is the one that counts under its assignment's policy and
its student came from an LMS launch, one passback row is queued for that result (the result's
job id is unique in the table, so a result is queued once however often this runs). A sender
posts each pending row: an OAuth2 access token (client credentials, a JWT client assertion
signed by the tool's key, RFC 7523), the assignment's line item (the one the launch named,
else found by its resourceId, else created), then the score. A try that fails (platform down,
5xx, timeout) is kept with its reason and retried with exponential backoff; a row is marked
sent once, and a sent row is never sent again.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from grader.service.core import Service
from grader.service.lti_store import LtiStore, Member, Platform
from grader.service.lti_tokens import client_assertion
from grader.service.store import Store

SCOPES = ("https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
          "https://purl.imsglobal.org/spec/lti-ags/scope/score")
TIMEOUT_S = 10.0
SENDER_LOCK = "nngrader-lti-passback"  # one sender among the processes sharing a database
MAX_TRIES = 12  # with backoff doubling from 30 s: about a day and a half of retries
FULL_EVERY = 120  # rounds between looks at every student (10 minutes at one round in 5 s)
PERMANENT = {400, 403, 404, 405, 409, 410, 413, 415, 422}  # the platform will say the same again


class SendError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def _request(method: str, url: str, token: str | None = None, body: Any = None, content_type: str = "",
             accept: str = "application/json", form: dict[str, str] | None = None, with_link: bool = False) -> Any:
    """One request to the platform: its JSON answer (and its Link header, `with_link`), else
    SendError saying what failed (permanent when the platform would answer the same again)."""
    headers = {"Accept": accept}
    data = None
    if form is not None:
        data, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
    elif body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), content_type or "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            text = r.read(16 << 20).decode("utf-8", "replace")
            link = r.headers.get("Link", "")
    except urllib.error.HTTPError as e:
        detail = e.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
        raise SendError(f"{method} {url}: HTTP {e.code} {detail}".strip(), e.code in PERMANENT) from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SendError(f"{method} {url}: {reason}") from None
    try:
        answer = json.loads(text) if text.strip() else None
        return (answer, link) if with_link else answer
    except ValueError:
        raise SendError(f"{method} {url}: the answer is not JSON") from None


def score_of(service: Service, attempt: Any, member: Member, base_url: str) -> dict[str, Any]:
    """The AGS score of a finished attempt (AGS 2.0, section 3.4)."""
    finished = datetime.fromtimestamp(attempt.finished, timezone.utc).isoformat(timespec="milliseconds")
    score: dict[str, Any] = {"userId": member.sub, "activityProgress": "Completed", "timestamp": finished,
                             "comment": f"Feedback: {base_url}/s/{attempt.id}/feedback"}
    if attempt.status == "error":  # (not graded: the platform shows it needs attention)
        score["gradingProgress"] = "Failed"
        score["comment"] = f"Could not be graded: {attempt.reason[:200]}. {score['comment']}"
        return score
    final = service.grade(attempt).final
    score.update(scoreGiven=round(float(final or 0.0), 4), scoreMaximum=float(attempt.max_score or 0.0),
                 gradingProgress="FullyGraded")
    return score


class Sender:
    """Queues the scores of counted results and posts the pending ones."""

    def __init__(self, service: Service, backoff_s: float = 30.0, interval_s: float = 5.0):
        self.service, self.lti = service, LtiStore(service.store)
        self.backoff_s, self.interval_s = backoff_s, interval_s
        self.tokens: dict[tuple[int, str], tuple[str, float]] = {}  # (platform, scopes) -> (token, expiry)
        self.seen, self.rounds = 0, 0  # the newest result looked at; rounds of collect()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def collect(self, everything: bool = False) -> int:
        """Queue a passback for each new result that counts for an LMS student; how many.
        Only the students with a result newer than the last look are looked at, and everyone
        every FULL_EVERY rounds (or when `everything`): a student who launched an assignment
        after handing it in is caught up then."""
        store, n = self.service.store, 0
        self.rounds += 1
        since = 0 if everything or self.rounds % FULL_EVERY == 1 else self.seen
        fresh = store.db.execute("SELECT a.user_id, a.assignment, max(r.job_id) FROM results r JOIN jobs j ON"
                                 " j.id = r.job_id JOIN attempts a ON a.id = j.attempt_id WHERE r.job_id > ?"
                                 " GROUP BY a.user_id, a.assignment", (since,)).fetchall()
        if not fresh:
            return 0
        known, base = self.lti.known_jobs(), store.meta("lti_public_url") or ""
        for uid, assignment, top in fresh:
            self.seen = max(self.seen, top)
            m = self.lti.member(uid, assignment)
            if m is None or assignment not in self.service.policies:
                continue
            counted = self.service.counted(store.attempts(uid, assignment), assignment)
            if counted is None:
                continue
            row = store.db.execute("SELECT j.id, r.finished FROM jobs j JOIN results r ON r.job_id = j.id WHERE"
                                   " j.attempt_id = ? ORDER BY j.round DESC LIMIT 1", (counted.id,)).fetchone()
            if row is None or row[0] in known:
                continue
            counted.finished = row[1]  # type: ignore[attr-defined]
            n += self.lti.queue_passback(row[0], uid, assignment, score_of(self.service, counted, m, base))
        return n

    def token(self, platform: Platform, scopes: tuple[str, ...] = SCOPES) -> str:
        """An access token for these scopes (client credentials with a JWT assertion), cached."""
        held = self.tokens.get((platform.id, " ".join(scopes)))
        if held and held[1] > time.time() + 30:
            return held[0]
        answer = _request("POST", platform.auth_token_url, form={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(self.lti, platform), "scope": " ".join(scopes)})
        if not isinstance(answer, dict) or not answer.get("access_token"):
            raise SendError(f"{platform.auth_token_url}: no access_token in the answer")
        self.tokens[(platform.id, " ".join(scopes))] = (answer["access_token"], time.time() + float(answer.get("expires_in") or 300))
        return answer["access_token"]

    def lineitem(self, platform: Platform, member: Member, token: str) -> str:
        """The assignment's line item: the launch's, else the one with its resourceId, else a new one."""
        if member.lineitem:
            return member.lineitem
        if not member.lineitems:
            raise SendError("the launch gave no line items endpoint (AGS is not enabled for this tool)", True)
        asg = member.assignment
        sep = "&" if "?" in member.lineitems else "?"
        found = _request("GET", f"{member.lineitems}{sep}resource_id={urllib.parse.quote(asg)}", token,
                         accept="application/vnd.ims.lis.v2.lineitemcontainer+json")
        items = [i for i in (found or []) if isinstance(i, dict) and i.get("resourceId") == asg and i.get("id")]
        if items:
            url = items[0]["id"]
        else:
            new = _request("POST", member.lineitems, token, {
                "scoreMaximum": self.max_score(asg), "label": asg, "resourceId": asg, "tag": "nngrader"},
                "application/vnd.ims.lis.v2.lineitem+json", "application/vnd.ims.lis.v2.lineitem+json")
            if not isinstance(new, dict) or not new.get("id"):
                raise SendError(f"{member.lineitems}: the created line item has no id")
            url = new["id"]
        self.lti.set_lineitem(platform.id, member.lineitems, asg, url)
        return url

    def max_score(self, assignment: str) -> float:
        done = [a for a in self.service.store.attempts(assignment=assignment) if a.max_score]
        return float(done[0].max_score) if done else 100.0

    def send(self, pb: Any) -> None:
        member = self.lti.member(pb.user_id, pb.assignment)
        platform = self.lti.platform(member.platform_id) if member else None
        if member is None or platform is None:
            raise SendError("the student's LMS or its registration is gone", True)
        token = self.token(platform)
        url = self.lineitem(platform, member, token)
        path, _, query = url.partition("?")
        _request("POST", f"{path.rstrip('/')}/scores" + (f"?{query}" if query else ""), token, pb.score,
                 "application/vnd.ims.lis.v1.score+json")

    def run_once(self, now: float | None = None) -> tuple[int, int]:
        """Queue new scores, then send those due: (sent, failed tries)."""
        self.collect()
        sent = failed = 0
        for pb in self.lti.passbacks(due=now or time.time()):
            try:
                self.send(pb)
            except SendError as e:
                if "HTTP 401" in str(e):  # (a token the platform no longer takes: ask for a new one)
                    self.tokens.clear()
                tries = pb.tries + 1
                retry = None if e.permanent or tries >= MAX_TRIES else time.time() + self.backoff_s * 2 ** (tries - 1)
                self.lti.passback_failed(pb.id, str(e), retry)
                failed += 1
            else:
                self.lti.passback_done(pb.id)
                sent += 1
        return sent, failed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lti-passback", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT_S * 3)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                # one sender among the processes sharing a PostgreSQL database: a score is posted once
                if self.lti.platforms() and self.service.store.db.singleton(SENDER_LOCK):
                    self.run_once()
            except Exception as e:  # (a bad row must not stop the passback of every other one)
                sys.stderr.write(f"grade serve: the grade passback failed a round: {type(e).__name__}: {e}\n")
                time.sleep(self.interval_s)


def start_sender(service: Service, db: Path | str) -> Sender:
    """A sender on its own connection to the database, running in the background."""
    own = Service(Store(db), service.policies, service.key, service.sources)
    sender = Sender(own)
    sender.start()
    return sender
