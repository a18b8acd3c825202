"""The service's pieces without a server: the queue's leases, recovery of a dead worker's jobs,
tokens and sessions, policies."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from grader.errors import GraderError
from grader.service import auth, people
from grader.service.policy import Policy, load_config, parse_size
from grader.service.store import Store, User
from grader.service.worker import failure_report
from tests.conftest import ROOT


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "service.sqlite")
    s.put_user(User("s1", "Ada", "", "", "student", True))
    yield s
    s.close()


def test_an_accepted_upload_is_on_disk_and_queued_before_add_attempt_returns(store):
    aid = store.add_attempt("s1", "a1", "hw.ipynb", "ab" * 32, b"{}")
    assert (store.files / f"{'ab' * 32}.ipynb").read_bytes() == b"{}"
    a = store.attempt(aid)
    assert (a.state, store.queue_position(aid)) == ("queued", 1)


def test_a_job_is_claimed_once_and_only_its_lease_records_its_result(store):
    aid = store.add_attempt("s1", "a1", "hw.ipynb", "ab" * 32, b"{}")
    job = store.claim("lease-1")
    assert job is not None and job.attempt_id == aid
    assert store.claim("lease-2") is None  # nothing else queued
    report = {"score": 3.0, "max_score": 5.0, "assignment": {"id": "a1"}}
    assert not store.finish(job.job_id, "lease-2", "graded", "", report, 0, 1, 7)
    assert store.finish(job.job_id, "lease-1", "graded", "", report, 0, 1, 7)
    assert not store.finish(job.job_id, "lease-1", "graded", "", report, 0, 1, 7)  # never twice
    a = store.attempt(aid)
    assert (a.state, a.status, a.score) == ("done", "graded", 3.0)


def test_a_dead_workers_job_is_queued_once_more_then_is_an_error_row(store):
    aid = store.add_attempt("s1", "a1", "hw.ipynb", "ab" * 32, b"{}")
    store.claim("dead-1")
    assert store.recover("", failure_report) == (1, 0)
    job = store.claim("dead-2")
    assert store.recover("", failure_report) == (0, 1)
    a = store.attempt(aid)
    assert (a.state, a.status) == ("done", "error")
    assert "stopped 2 times" in a.reason
    # the presumed-dead worker, had it lived on, records nothing
    assert not store.finish(job.job_id, "dead-2", "graded", "", {"score": 1}, 0, 1, 1)
    assert store.db.execute("SELECT count(*) FROM results").fetchone()[0] == 1


def test_recovery_keeps_the_live_workers_jobs(store):
    store.add_attempt("s1", "a1", "hw.ipynb", "ab" * 32, b"{}")
    store.claim("live")
    assert store.recover("live", failure_report) == (0, 0)


def test_a_regrade_adds_a_round_and_keeps_the_old_result(store):
    aid = store.add_attempt("s1", "a1", "hw.ipynb", "ab" * 32, b"{}")
    job = store.claim("w")
    store.finish(job.job_id, "w", "graded", "", {"score": 1.0, "max_score": 5.0}, 0, 1, 1)
    assert store.regrade("a1") == 1
    a = store.attempt(aid)
    assert (a.state, a.round, a.score) == ("queued", 2, 1.0)  # the old score shows until the new one
    job = store.claim("w")
    store.finish(job.job_id, "w", "graded", "", {"score": 5.0, "max_score": 5.0}, 0, 1, 1)
    assert store.attempt(aid).score == 5.0
    assert [r[0] for r in store.db.execute("SELECT score FROM results ORDER BY job_id")] == [1.0, 5.0]


def test_queue_positions_count_from_the_oldest_job(store):
    ids = [store.add_attempt("s1", "a1", f"{i}.ipynb", f"{i:064x}", b"{}") for i in range(3)]
    assert [store.queue_position(i) for i in ids] == [1, 2, 3]
    store.claim("w")
    assert [store.queue_position(i) for i in ids] == [None, 1, 2]


def test_tokens_are_stored_hashed_and_a_new_one_revokes_the_old(store, tmp_path):
    first = people.issue(store, "s1")
    assert first.token not in (tmp_path / "service.sqlite").read_bytes().decode("latin-1")
    assert store.token_user(auth.token_hash(first.token))[0].id == "s1"
    second = people.issue(store, "s1")
    assert store.token_user(auth.token_hash(first.token)) == (None, "this access token was replaced by a newer one")
    assert store.token_user(auth.token_hash(second.token))[0].id == "s1"
    assert first.link("http://h:1/") == f"http://h:1/login#{first.token}"


def test_an_expired_token_says_so(store):
    store.add_token("s1", auth.token_hash("t"), time.time() - 1)
    user, why = store.token_user(auth.token_hash("t"))
    assert user is None and "expired" in why


def test_a_roster_import_drops_who_left_and_issues_tokens_only_to_new_students(store, tmp_path):
    roster = tmp_path / "r.csv"
    roster.write_text("id,name\ns1,Ada\ns2,Alan\n")
    assert [i.user for i in people.import_roster(store, roster)] == ["s1", "s2"]
    roster.write_text("id,name\ns2,Alan\n")
    assert people.import_roster(store, roster) == []
    assert not store.user("s1").active


def test_a_session_cookie_is_refused_when_tampered_with_or_expired():
    key = auth.new_key()
    cookie = auth.session_cookie(key, "s1")
    assert auth.session_user(key, cookie) == "s1"
    uid, exp, sig = cookie.split("|")
    forged = auth.session_cookie(key, "s2").split("|")[0]
    assert auth.session_user(key, f"{forged}|{exp}|{sig}") is None
    assert auth.session_user(auth.new_key(), cookie) is None
    assert auth.session_user(key, auth.session_cookie(key, "s1", now=time.time() - auth.SESSION_S - 5)) is None
    assert auth.csrf_ok(key, cookie, auth.csrf_token(key, cookie))
    assert not auth.csrf_ok(key, cookie, auth.csrf_token(key, auth.session_cookie(key, "s2")))


def test_the_submission_limit_names_the_time_of_the_next_allowed_one():
    p = Policy(max_submissions=2, window_s=3600)
    assert p.next_allowed([100.0], 200.0) is None
    assert p.next_allowed([100.0, 150.0], 200.0) == 3700.0
    assert p.next_allowed([100.0, 150.0], 3800.0) is None


def test_a_config_with_an_unknown_key_or_assignment_is_one_line(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[assignments.a1]\ndue = "2026-03-01T23:59Z"\nlate_penalty = "10%/day"\ncounts = "best"\n'
                   'max_upload = "1MB"\nmax_submissions = 3\nwindow = "30m"\n')
    p = load_config(cfg, ["a1"])["a1"]
    assert (p.counts, p.max_upload, p.max_submissions, p.window_s, p.late.penalty) == ("best", 1 << 20, 3, 1800, 10)
    cfg.write_text('[assignments.a1]\ndeadline = "x"\n')
    with pytest.raises(GraderError, match="unknown key 'deadline'"):
        load_config(cfg, ["a1"])
    cfg.write_text("[assignments.a2]\n")
    with pytest.raises(GraderError, match="not served"):
        load_config(cfg, ["a1"])
    assert parse_size("500KB") == 500 * 1024


def test_importing_grader_and_its_submit_loads_no_web_stack():
    code = ("import sys; from grader import submit; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'httpx', 'torch')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_notebook_is_fsynced_before_its_attempt_is_committed(store, monkeypatch):
    import os

    events = []
    real_fsync, real_execute = os.fsync, store.db.execute
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])

    class Spy:  # (sqlite3.Connection's methods cannot be patched: wrap it)
        def __getattr__(self, name):
            return getattr(store.db_real, name)

        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO attempts"):
                events.append("insert")
            return real_execute(sql, *args)

    store.db_real, store.db = store.db, Spy()
    store.add_attempt("s1", "a1", "hw.ipynb", "cd" * 32, b"{}")
    assert events[:3] == ["fsync", "fsync", "insert"]  # the file, then its folder, then the row


def test_an_assignment_not_open_yet_refuses_uploads_with_its_opening_time(store):
    from grader.service.core import Refused, Service

    svc = Service(store, {"a1": Policy(opens=time.time() + 3600)}, auth.new_key())
    with pytest.raises(Refused, match=r"a1 opens at \d{4}-\d\d-\d\d \d\d:\d\d UTC") as e:
        svc.check_upload(store.user("s1"), "a1", "hw.ipynb", b"{}", time.time())
    assert e.value.status == 403
