"""The service on PostgreSQL (a real server, tests/pg_support.py): the same store as on SQLite
(the store's tests here run on both), a queue that several processes share with no job taken
twice, leases judged by their process and heartbeat, a worker stopped on purpose giving its
jobs back, and two web processes with two `grade worker` processes, each kind killed with
`kill -9` mid-grade, losing nothing and grading nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader.service.core import Refused, Service
from grader.service.lti_passback import SENDER_LOCK
from grader.service.policy import Policy
from grader.service.store import MAX_TRIES, Store, User
from grader.service.worker import failure_report
from tests.conftest import NOTEBOOKS, ROOT
from tests.service_support import Server, rows, start_worker, wait_for

LOOP = (NOTEBOOKS / "adversarial" / "infinite_loop.ipynb").read_bytes()


def students(store: Store, n: int) -> list[str]:
    ids = [f"s{i}" for i in range(n)]
    for sid in ids:
        store.put_user(User(sid, sid, "", "", "student", True))
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Path | str:
    return tmp_path / "service.sqlite" if request.param == "sqlite" else request.getfixturevalue("pg_url")


@pytest.fixture
def store(db):
    s = Store(db)
    yield s
    s.close()


def at_once(db: Path | str, n: int, body) -> None:
    """`body(store, i)` in n threads at once, each on a connection of its own."""
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        own = Store(db)
        try:
            barrier.wait()
            body(own, i)
        finally:
            own.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def test_many_workers_taking_jobs_at_once_never_take_one_twice(db, store):
    (sid,) = students(store, 1)
    ids = {store.add_attempt(sid, "a1", f"{i}.ipynb", f"{i:064x}", b"{}") for i in range(60)}
    taken: list[int] = []

    def worker(own: Store, n: int) -> None:
        while (job := own.claim(f"w{n}")) is not None:
            taken.append(job.attempt_id)
            time.sleep(0.005)  # (grading it)

    at_once(db, 6, worker)
    assert sorted(taken) == sorted(ids)  # every job taken, none twice
    assert rows(db, "SELECT count(DISTINCT lease) FROM jobs")[0][0] > 1  # (shared, not one worker's)


def test_two_uploads_at_once_cannot_both_pass_the_submission_limit(db, store):
    (sid,) = students(store, 1)
    policy = Policy(max_submissions=1, window_s=3600)
    accepted, refused = [], []

    def upload(own: Store, n: int) -> None:
        try:
            own.add_attempt(sid, "a1", "hw.ipynb", f"{n:064x}", b"{}",
                            check=lambda recent, now: Service.check_limit(policy, recent, now),
                            window_s=policy.window_s)
            accepted.append(n)
        except Refused:
            refused.append(n)

    at_once(db, 4, upload)
    assert (len(accepted), len(refused)) == (1, 3)
    assert rows(db, "SELECT count(*) FROM attempts")[0][0] == 1


def test_a_lease_is_alive_while_it_beats_here_or_on_another_host(db, store):
    (sid,) = students(store, 1)
    store.add_attempt(sid, "a1", "hw.ipynb", "ab" * 32, b"{}")
    store.register("elsewhere")
    store.db.execute("UPDATE workers SET host = 'grading-host-2', pid = 1 WHERE lease = 'elsewhere'")
    store.claim("elsewhere")
    assert store.recover(failure_report) == (0, 0)  # (another host's worker, beating: kept)
    store.db.execute("UPDATE workers SET beat = beat - 3600 WHERE lease = 'elsewhere'")
    assert store.recover(failure_report) == (1, 0)  # its heartbeat stopped: the job goes back once
    assert rows(db, "SELECT lease FROM workers") == []


def test_a_lease_whose_process_ended_on_this_host_is_taken_back_at_once(db, store):
    (sid,) = students(store, 1)
    aid = store.add_attempt(sid, "a1", "hw.ipynb", "ab" * 32, b"{}")
    code = f"from grader.service.store import Store; s = Store({str(db)!r}); s.register('gone'); s.claim('gone')"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
    assert store.recover(failure_report) == (1, 0)  # (its beat is fresh, but its process is gone)
    store.claim("gone-again")
    assert store.recover(failure_report) == (0, 1)
    a = store.attempt(aid)
    assert (a.state, a.status, a.reason) == ("done", "error", f"the grading worker stopped {MAX_TRIES} times "
                                                              "while grading this notebook")


def test_uploaded_notebooks_are_in_the_database_for_workers_on_other_hosts(pg_url):
    store = Store(pg_url)
    (sid,) = students(store, 1)
    store.add_attempt(sid, "a1", "hw.ipynb", "cd" * 32, b'{"cells": []}')
    assert store.files is None
    other = Store(pg_url)
    try:
        job = other.claim("w")
        assert other.notebook(job.stored) == b'{"cells": []}'
    finally:
        other.close()
        store.close()


def test_processes_starting_at_once_on_an_empty_database_all_create_it_or_find_it(db):
    code = f"from grader.service.store import Store; Store({str(db)!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(4)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    assert rows(db, "SELECT value FROM service_meta WHERE key = 'schema'") == [("service/1",)]


def test_an_unreachable_or_foreign_database_is_one_line(pg_url, tmp_path):
    def serve(url: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "grader.cli", "serve", "-a", "sigmoid-2-3-1", "--db", url],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    r = serve("postgresql://nobody:secret@127.0.0.1:1/nothing")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("grade: error: cannot connect to postgresql://nobody:***@127.0.0.1:1/nothing")
    assert "secret" not in r.stderr
    rows(pg_url, "SELECT 1")
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE grades (student text)")
    r = serve(pg_url)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a database this service wrote" in r.stderr


def holder(db: str, attempt: int) -> int | None:
    """The process id of the worker grading an attempt now, if any."""
    found = rows(db, f"SELECT w.pid FROM jobs j JOIN workers w ON w.lease = j.lease WHERE j.attempt_id = {attempt}"
                     " AND j.state = 'grading'")
    return found[0][0] if found else None


def test_two_servers_and_two_workers_lose_nothing_when_one_of_each_is_killed(pg_url, tmp_path):
    names = ["k1", "k2", "k3", "k4", "k5", "k6"]
    a = Server(tmp_path, names, cell_timeout=5, total_timeout=40, jobs=0, database=pg_url, name="web-a").setup()
    b = Server(tmp_path, names, cell_timeout=5, total_timeout=40, jobs=0, database=pg_url, name="web-b")
    b.tokens = a.tokens
    a.start()
    b.start()
    args = ("--jobs", "1", "--timeout", "5", "--total-timeout", "40")
    workers = [start_worker(tmp_path, pg_url, *args, name=f"worker-{i}") for i in (1, 2)]
    try:
        first = a.submit("k1", data=LOOP)["id"]  # (runs until its cell limit: time to kill its worker)
        ids = [first] + [(a if i % 2 else b).submit(s, "correct")["id"] for i, s in enumerate(names[1:4])]
        wait_for(lambda: holder(pg_url, first) is not None, 120)
        victim = holder(pg_url, first)
        os.kill(victim, signal.SIGKILL)  # a worker dies mid-grade
        a.stop(signal.SIGKILL)  # and so does a web process
        ids += [b.submit(s, "correct")["id"] for s in names[4:]]  # the other one takes uploads on
        for s, i in zip(names, ids):
            b.wait_done(s, i, timeout=300)
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)
        b.stop()
    per_attempt = dict(rows(pg_url, "SELECT j.attempt_id, count(r.job_id) FROM jobs j LEFT JOIN results r"
                                    " ON r.job_id = j.id GROUP BY j.attempt_id"))
    assert per_attempt == {i: 1 for i in ids}  # exactly one result each: none lost, none twice
    assert rows(pg_url, f"SELECT tries FROM jobs WHERE attempt_id = {first}") == [(2,)]
    statuses = dict(rows(pg_url, "SELECT a.user_id, r.status FROM attempts a JOIN jobs j ON j.attempt_id = a.id"
                                 " JOIN results r ON r.job_id = j.id"))
    assert statuses == {"k1": "timeout"} | {s: "graded" for s in names[1:]}


def test_grade_worker_stopped_with_sigterm_gives_its_job_back_without_counting_a_try(db, store, tmp_path):
    (sid,) = students(store, 1)
    aid = store.add_attempt(sid, "sigmoid-2-3-1", "hw.ipynb", "ef" * 32, LOOP)
    proc = start_worker(tmp_path, db, "--timeout", "60", "--total-timeout", "120")
    try:
        wait_for(lambda: rows(db, f"SELECT state FROM jobs WHERE attempt_id = {aid}") == [("grading",)], 120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rows(db, f"SELECT state, tries, lease FROM jobs WHERE attempt_id = {aid}") == [("queued", 0, "")]
    assert rows(db, "SELECT lease FROM workers") == []


def test_one_process_at_a_time_posts_grades_to_the_lms_and_another_takes_over_when_it_ends(pg_url):
    first, second = Store(pg_url), Store(pg_url)
    try:
        assert first.db.singleton(SENDER_LOCK)
        assert first.db.singleton(SENDER_LOCK)  # (still its own, round after round)
        assert not second.db.singleton(SENDER_LOCK)
        first.close()  # (its process ended: the lock goes with its connection, once the server sees it)
        wait_for(lambda: second.db.singleton(SENDER_LOCK), 30)  # (the sender tries every round, likewise)
    finally:
        second.close()
