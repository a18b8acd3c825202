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
    assert store.recover(failure_report) == (1, 0)
    job = store.claim("dead-2")
    assert store.recover(failure_report) == (0, 1)
    a = store.attempt(aid)
    assert (a.state, a.status) == ("done", "error")
    assert "stopped 2 times" in a.reason
    # the presumed-dead worker, had it lived on, records nothing
    assert not store.finish(job.job_id, "dead-2", "graded", "", {"score": 1}, 0, 1, 1)
    assert store.db.execute("SELECT count(*) FROM results").fetchone()[0] == 1


def test_recovery_keeps_the_live_workers_jobs(store):
    store.add_attempt("s1", "a1", "hw.ipynb", "ab" * 32, b"{}")
    store.register("live")
    store.claim("live")
    assert store.recover(failure_report) == (0, 0)
    assert store.recover(failure_report, dead="live") == (1, 0)  # (a lease its server saw end)


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
    cookie = auth.session_cookie(key, "h1")
    assert auth.session_token(key, cookie) == "h1"
    _, exp, sig = cookie.split("|")
    assert auth.session_token(key, f"h2|{exp}|{sig}") is None
    assert auth.session_token(auth.new_key(), cookie) is None
    assert auth.session_token(key, auth.session_cookie(key, "h1", now=time.time() - auth.SESSION_S - 5)) is None
    assert auth.csrf_ok(key, cookie, auth.csrf_token(key, cookie))
    assert not auth.csrf_ok(key, cookie, auth.csrf_token(key, auth.session_cookie(key, "h2")))


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

    def execute(sql, *args):
        if sql.startswith("INSERT INTO attempts"):
            events.append("insert")
        return real_execute(sql, *args)

    monkeypatch.setattr(store.db, "execute", execute)
    store.add_attempt("s1", "a1", "hw.ipynb", "cd" * 32, b"{}")
    assert events[:3] == ["fsync", "fsync", "insert"]  # the file, then its folder, then the row


def test_an_assignment_not_open_yet_refuses_uploads_with_its_opening_time(store):
    from grader.service.core import Refused, Service

    svc = Service(store, {"a1": Policy(opens=time.time() + 3600)}, auth.new_key())
    with pytest.raises(Refused, match=r"a1 opens at \d{4}-\d\d-\d\d \d\d:\d\d UTC") as e:
        svc.check_upload(store.user("s1"), "a1", "hw.ipynb", b"{}", time.time())
    assert e.value.status == 403


@pytest.mark.parametrize("args", [["serve", "--help"], ["submit", "--help"], ["serve", "roster", "--help"]])
def test_the_service_commands_help_loads_no_web_stack_or_kernel_machinery(args):
    from tests.test_startup import HEAVY, _modules

    r, modules = _modules(*args)
    assert r.returncode == 0, r.stderr
    assert not modules & {*HEAVY, "starlette", "uvicorn", "httpx", "multipart"}


@pytest.mark.parametrize("counts,expected", [("last", 1), ("best", 0)])
def test_the_policy_says_whether_the_last_or_the_best_attempt_counts(store, counts, expected):
    from grader.service.core import Service

    ids = []
    for n, score in enumerate((9.0, 4.0)):
        ids.append(store.add_attempt("s1", "a1", "hw.ipynb", f"{n:064x}", b"{}"))
        job = store.claim("w")
        store.finish(job.job_id, "w", "graded", "", {"score": score, "max_score": 11.0, "checks": [],
                                                     "assignment": {"id": "a1"}}, 0, 1, 1)
    store.add_attempt("s1", "a1", "hw.ipynb", f"{7:064x}", b"{}")  # (queued: never counts)
    svc = Service(store, {"a1": Policy(counts=counts)}, auth.new_key())
    assert svc.counted(store.attempts("s1", "a1", with_report=True), "a1").id == ids[expected]


def test_a_port_already_taken_is_one_line_before_anything_starts(tmp_path):
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "grader.cli", "serve", "-a", "sigmoid-2-3-1", "--db",
                            str(tmp_path / "s.sqlite"), "--port", str(port)], capture_output=True, text=True,
                           cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2
    assert r.stderr == f"grade: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_the_dashboard_view_pairs_identical_code_of_the_counted_attempts(store):
    from grader.service.core import Service
    from tests.batch_support import ASSIGNMENT, notebook_bytes

    store.put_user(User("s2", "Alan", "", "", "student", True))
    for n, (who, kind) in enumerate((("s1", "correct"), ("s2", "correct"))):
        store.add_attempt(who, ASSIGNMENT, "hw.ipynb", f"{n:064x}", notebook_bytes(kind, who))
        job = store.claim("w")
        store.finish(job.job_id, "w", "graded", "", {"score": 11.0, "max_score": 11.0, "checks": [],
                                                     "assignment": {"id": ASSIGNMENT}}, 0, 1, 1)
    view = Service(store, {ASSIGNMENT: Policy()}, auth.new_key()).view(ASSIGNMENT)
    assert [(p.a, p.b, p.kind) for p in view.pairs] == [("s1", "s2", "identical")]


def test_grade_serve_without_the_web_stack_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['uvicorn'] = None; from grader.cli import main; "
            f"main(args=['serve', '-a', 'sigmoid-2-3-1', '--db', {str(tmp_path / 's.sqlite')!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert r.stderr == "grade: error: grade serve needs uvicorn: pip install 'nngrader[serve]'\n"


def test_a_late_upload_loses_what_the_late_policy_says(store):
    from grader.course.late import LatePolicy
    from grader.service.core import Service

    aid = store.add_attempt("s1", "a1", "hw.ipynb", "ef" * 32, b"{}")
    job = store.claim("w")
    store.finish(job.job_id, "w", "graded", "", {"score": 10.0, "max_score": 10.0, "checks": [],
                                                 "assignment": {"id": "a1"}}, 0, 1, 1)
    due = time.time() - 36 * 3600  # a day and a half ago: two started days late
    svc = Service(store, {"a1": Policy(due=due, late=LatePolicy(penalty=10, unit="day"))}, auth.new_key())
    g = svc.grade(store.attempt(aid))
    assert (g.late.state, g.late.penalty, g.final) == ("late", 2.0, 8.0)
    assert "20% of the points" in g.late.note


def test_an_extension_given_with_grade_serve_extend_removes_the_late_penalty(store, tmp_path):
    import os

    from grader.course.late import LatePolicy
    from grader.service.core import Service

    aid = store.add_attempt("s1", "a1", "hw.ipynb", "ef" * 32, b"{}")
    job = store.claim("w")
    store.finish(job.job_id, "w", "graded", "", {"score": 10.0, "max_score": 10.0, "checks": [],
                                                 "assignment": {"id": "a1"}}, 0, 1, 1)
    svc = Service(store, {"a1": Policy(due=time.time() - 86400, late=LatePolicy(penalty=10, unit="day"))},
                  auth.new_key())
    assert svc.grade(store.attempt(aid)).final == 9.0
    r = subprocess.run([sys.executable, "-m", "grader.cli", "serve", "extend", "s1", "-a", "a1", "--due",
                        "2099-01-01T00:00Z", "--comment", "illness", "--db", str(store.path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (r.returncode, r.stdout) == (0, "s1: a1 due 2099-01-01 00:00 UTC\n"), r.stderr
    g = svc.grade(store.attempt(aid))
    assert (g.final, g.late.state) == (10.0, "on_time")
    r = subprocess.run([sys.executable, "-m", "grader.cli", "serve", "extend", "nobody", "-a", "a1", "--due",
                        "2099-01-01T00:00Z", "--db", str(store.path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (r.returncode, r.stderr) == (2, "grade: error: no student 'nobody' (import the roster first)\n")


def test_grade_serve_instructor_and_token_print_a_link_and_a_new_token_replaces_the_old(tmp_path):
    import os

    db = str(tmp_path / "s.sqlite")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def grade(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "grader.cli", "serve", *args, "--db", db], capture_output=True,
                              text=True, cwd=ROOT, timeout=60, env=env)

    r = grade("instructor", "ta", "--name", "The TA")
    assert r.returncode == 0 and r.stdout.startswith("ta\tThe TA\thttp://127.0.0.1:8000/login#ngt_"), r.stderr
    old = r.stdout.strip().split("#")[1]
    r = grade("token", "ta", "--url", "https://grader.example.edu/")
    assert r.stdout.startswith("ta\tThe TA\thttps://grader.example.edu/login#ngt_")
    new = r.stdout.strip().split("#")[1]
    store = Store(tmp_path / "s.sqlite")
    assert store.token_user(auth.token_hash(old))[0] is None
    assert store.token_user(auth.token_hash(new))[0].role == "instructor"
    assert grade("token", "nobody").stderr == ("grade: error: no user 'nobody' (import the roster, or add the "
                                               "instructor)\n")


def test_the_submission_limit_is_checked_again_in_the_transaction_that_adds_the_attempt(store):
    from grader.service.core import Refused, Service

    svc = Service(store, {"a1": Policy(max_submissions=1, window_s=3600)}, auth.new_key())
    user = store.user("s1")
    svc.check_upload(user, "a1", "hw.ipynb", b"{}", time.time())  # two uploads at once both pass this...
    svc.check_upload(user, "a1", "hw.ipynb", b"{}", time.time())
    import asyncio

    asyncio.run(svc.accept(user, "a1", "hw.ipynb", b"{}"))
    with pytest.raises(Refused, match="at most 1 submissions per 1 h") as e:  # ...only one is stored
        asyncio.run(svc.accept(user, "a1", "hw.ipynb", b"{ }"))
    assert e.value.status == 429
    assert store.db.execute("SELECT count(*) FROM attempts").fetchone()[0] == 1
