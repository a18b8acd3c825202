"""Grades back to the simulated LMS by AGS (tests/lti_support.py): real servers on loopback,
real SQLite, the tool's real client assertion checked by the LMS against the tool's JWKS.

A result is recorded here through the queue's own claim and finish (no kernel), then the
passback sender runs one round at a time (what its background thread does every few seconds).
"""

from __future__ import annotations

import html
import re
import time

import pytest

from grader.service.core import Service
from grader.service.lti_passback import Sender
from grader.service.store import Store
from tests.batch_support import ASSIGNMENT
from tests.lti_support import (  # noqa: F401 (fixtures lms, tool)
    INSTRUCTOR,
    LEARNER,
    Lms,
    Tool,
    lms_fixture,
    tool_fixture,
    upload,
)


@pytest.fixture
def sender(tool):
    own = Store(tool.store.path)
    yield Sender(Service(own, tool.service.policies, tool.service.key), backoff_s=30.0)
    own.close()


def record(tool: Tool, attempt: int, score: float, status: str = "graded") -> None:
    """The attempt's result, recorded as a worker records it (its lease on the job)."""
    store = Store(tool.store.path)
    try:
        job = store.claim("test-worker")
        assert job is not None and job.attempt_id == attempt
        t = time.time()
        assert store.finish(job.job_id, "test-worker", status, "" if status == "graded" else "it crashed",
                            {"score": score, "max_score": 11.0, "flags": [], "checks": []}, t - 1, t, 0)
    finally:
        store.close()


def scores_for(lms: Lms, sub: str) -> list[dict]:
    return [s for s in lms.scores if s["userId"] == sub]


def test_a_counted_result_goes_back_once_with_every_ags_field(tool, lms, sender):
    """AGS 3.4 (score publish service): userId, scoreGiven, scoreMaximum, activityProgress,
    gradingProgress, timestamp and a comment with the feedback's address, posted to the
    assignment's line item (created once with its resourceId, AGS 3.2) with a token obtained by
    client credentials and a JWT client assertion (SF 4.1, RFC 7523) the LMS verified against
    the tool's JWKS. Each result is sent exactly once; a later attempt sends its own score."""
    c = tool.signed_in(lms.claims("pb-1", LEARNER))
    first = upload(tool, c, "pb-1")
    record(tool, first, 9.0)
    assert sender.run_once() == (1, 0)
    score, = scores_for(lms, "pb-1")
    assert (score["scoreGiven"], score["scoreMaximum"]) == (9.0, 11.0)
    assert (score["activityProgress"], score["gradingProgress"]) == ("Completed", "FullyGraded")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", score["timestamp"])
    assert score["comment"].endswith(f"{tool.url}/s/{first}/feedback")
    item, = [i for i in lms.lineitems.values() if i["resourceId"] == ASSIGNMENT]
    assert item["scoreMaximum"] == 11.0 and score["lineitem"] == item["id"].rsplit("/", 1)[1]
    grant = lms.token_requests[-1]
    assert grant["grant_type"] == "client_credentials" and "lti-ags/scope/score" in grant["scope"]
    assert sender.run_once() == (0, 0) and len(scores_for(lms, "pb-1")) == 1  # (sent once)
    second = upload(tool, c, "pb-1")
    record(tool, second, 11.0)
    assert sender.run_once() == (1, 0)
    assert [s["scoreGiven"] for s in scores_for(lms, "pb-1")] == [9.0, 11.0]
    assert len(lms.lineitems) == 1  # (the line item found again, not created twice)


def test_an_ungradable_attempt_is_sent_as_failed_without_a_score(tool, lms, sender):
    """AGS 3.4.6: gradingProgress Failed when the notebook could not be graded; no scoreGiven."""
    c = tool.signed_in(lms.claims("pb-err", LEARNER))
    record(tool, upload(tool, c, "pb-err"), 0.0, status="error")
    sender.run_once()
    score, = scores_for(lms, "pb-err")
    assert score["gradingProgress"] == "Failed" and "scoreGiven" not in score
    assert "Could not be graded: it crashed" in score["comment"]


def test_the_lms_down_during_passback_is_retried_later_and_sent_exactly_once(tool, lms, sender):
    """A passback that fails (here the LMS answers 503) stays in the database with its reason,
    waits for its backoff, then is sent once when the LMS is back; the instructor's page shows
    it pending and why, then sent."""
    c = tool.signed_in(lms.claims("pb-down", LEARNER))
    aid = upload(tool, c, "pb-down")
    record(tool, aid, 7.0)
    lms.down = True
    try:
        assert sender.run_once() == (0, 1)
        assert sender.run_once() == (0, 0)  # (not due yet: the backoff)
    finally:
        lms.down = False
    (state, tries, error, next_try), = tool.store.db.execute(
        "SELECT p.state, p.tries, p.error, p.next_try FROM lti_passbacks p JOIN jobs j ON j.id = p.job_id"
        " WHERE j.attempt_id = ?", (aid,))
    assert (state, tries) == ("pending", 1) and "HTTP 503" in error and next_try > time.time() + 20
    teacher = tool.signed_in(lms.claims("pb-teacher", INSTRUCTOR))
    dashboard = teacher.get(f"{tool.url}/i/{ASSIGNMENT}/")
    assert dashboard.status_code == 200 and f'href="/i/{ASSIGNMENT}/lti"' in dashboard.text
    page = teacher.get(f"{tool.url}/i/{ASSIGNMENT}/lti").text
    assert re.search(r"\d+ sent, 1 pending, 0 failed", page) and "HTTP 503" in html.unescape(page)
    assert not scores_for(lms, "pb-down")
    later = time.time() + 31
    assert sender.run_once(later) == (1, 0)
    assert sender.run_once(later + 3600) == (0, 0)
    assert [s["scoreGiven"] for s in scores_for(lms, "pb-down")] == [7.0]
    assert "0 pending" in teacher.get(f"{tool.url}/i/{ASSIGNMENT}/lti").text


def test_a_refusal_by_the_lms_is_not_retried_and_the_page_says_why(tool, lms, sender):
    """A 4xx the LMS would repeat (here a line item that no longer exists: 404) marks the
    passback failed at once, with the LMS's answer for the instructor."""
    c = tool.signed_in(lms.claims("pb-gone", LEARNER))
    aid = upload(tool, c, "pb-gone")
    tool.store.db.execute("UPDATE lti_members SET lineitem = ? WHERE sub = 'pb-gone'", (f"{lms.url}/nothing/9",))
    record(tool, aid, 5.0)
    assert sender.run_once(time.time() + 10**6) == (0, 1)
    (state, error), = tool.store.db.execute("SELECT p.state, p.error FROM lti_passbacks p JOIN jobs j ON"
                                            " j.id = p.job_id WHERE j.attempt_id = ?", (aid,))
    assert state == "failed" and "HTTP 404" in error
    assert sender.run_once(time.time() + 10**7) == (0, 0) and not scores_for(lms, "pb-gone")


def test_the_roster_syncs_by_nrps_with_roles_status_and_every_page(tool, lms, sender):
    """NRPS 2.0 (section 2, membership container; 2.4.1 paging by Link rel="next"): every member
    of the course a launch came from becomes a user with the launch's id and role mapping;
    an Inactive member is inactive; a Mentor gets no account."""
    from grader.service.lti_roster import sync
    from tests.lti_support import MEMBERSHIP

    lms.members = [
        {"user_id": "nr-1", "name": "Ada L", "email": "ada@example.edu", "status": "Active", "roles": [LEARNER]},
        {"user_id": "nr-2", "name": "Bo D", "status": "Inactive", "roles": [LEARNER]},
        {"user_id": "nr-t", "name": "Prof T", "status": "Active", "roles": [INSTRUCTOR]},
        {"user_id": "nr-m", "name": "Mentor M", "status": "Active", "roles": [MEMBERSHIP + "Mentor"]},
        {"user_id": "nr-5", "given_name": "Cy", "family_name": "E", "roles": [LEARNER]},
    ]
    claims = lms.claims("nr-t", INSTRUCTOR, **{
        "https://purl.imsglobal.org/spec/lti/claim/context": {"id": "course-1", "title": "Deep learning"},
        "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice": {
            "context_memberships_url": f"{lms.url}/memberships", "service_versions": ["2.0"]}})
    tool.signed_in(claims)
    lines = sync(sender)
    assert lines == ["Deep learning: 5 members, 3 new, 1 changed, 1 without a role here"]  # (nr-t: launched)
    users = {u.id: u for u in Store(tool.store.path).users()}
    ada, bo, prof = users["lti-1-nr-1"], users["lti-1-nr-2"], users["lti-1-nr-t"]
    assert (ada.role, ada.name, ada.email, ada.active) == ("student", "Ada L", "ada@example.edu", True)
    assert (bo.role, bo.active) == ("student", False) and prof.role == "instructor"
    assert users["lti-1-nr-5"].name == "Cy E" and "lti-1-nr-m" not in users
    assert "nrps/scope/contextmembership.readonly" in lms.token_requests[-1]["scope"]
    lms.members[1]["status"] = "Active"
    assert sync(sender) == ["Deep learning: 5 members, 0 new, 1 changed, 1 without a role here"]
    lms.down = True
    try:
        assert "not synced: " in sync(sender)[0] and "HTTP 503" in sync(sender)[0]
    finally:
        lms.down = False


def test_under_the_best_policy_only_an_attempt_that_counts_is_sent(lms, tmp_path):
    """AGS 3.4 scores follow the assignment's policy: with `counts = "best"` a worse later
    attempt sends nothing (the LMS keeps the best), a better one sends its score."""
    tool = Tool(tmp_path, lms, config=f'[assignments.{ASSIGNMENT}]\ncounts = "best"\n').start()
    own = Store(tool.store.path)
    try:
        sender = Sender(Service(own, tool.service.policies, tool.service.key))
        c = tool.signed_in(lms.claims("best-1", LEARNER))
        for score, sent in ((9.0, 1), (5.0, 0), (11.0, 1)):
            record(tool, upload(tool, c, "best-1"), score)
            assert sender.run_once() == (sent, 0), score
        assert [s["scoreGiven"] for s in scores_for(lms, "best-1")] == [9.0, 11.0]
    finally:
        own.close()
        tool.stop()


def test_a_platform_that_hangs_or_refuses_connections_is_retried_with_the_reason(tool, lms, sender, monkeypatch):
    """A timeout and a refused connection are failures to retry (not to give up on), each
    kept with its reason; the score goes once the platform answers."""
    import grader.service.lti_passback as passback
    from tests.service_support import free_port

    monkeypatch.setattr(passback, "TIMEOUT_S", 0.5)
    c = tool.signed_in(lms.claims("pb-slow", LEARNER))
    aid = upload(tool, c, "pb-slow")
    record(tool, aid, 6.0)
    query = "SELECT p.state, p.error FROM lti_passbacks p JOIN jobs j ON j.id = p.job_id WHERE j.attempt_id = ?"
    lms.slow_s = 2.0
    try:
        assert sender.run_once() == (0, 1)
    finally:
        lms.slow_s = 0.0
    (state, error), = tool.store.db.execute(query, (aid,))
    assert state == "pending" and "timed out" in error
    real = tool.store.db.execute("SELECT auth_token_url FROM lti_platforms WHERE id = 1").fetchone()[0]
    with tool.store.transaction() as db:
        db.execute("UPDATE lti_platforms SET auth_token_url = ? WHERE id = 1", (f"http://127.0.0.1:{free_port()}/t",))
    try:
        assert sender.run_once(time.time() + 10**4) == (0, 1)
    finally:
        with tool.store.transaction() as db:
            db.execute("UPDATE lti_platforms SET auth_token_url = ? WHERE id = 1", (real,))
    (state, error), = tool.store.db.execute(query, (aid,))
    assert state == "pending" and "refused" in error.lower()
    monkeypatch.setattr(passback, "TIMEOUT_S", 10.0)  # (the platform answers again, at its pace)
    assert sender.run_once(time.time() + 10**5) == (1, 0), list(tool.store.db.execute(query, (aid,)))
    assert len(scores_for(lms, "pb-slow")) == 1
