"""The service under attack and accident: the server killed with `kill -9` mid-grading and
started again, the worker killed twice on one notebook, hostile notebooks graded while other
students keep being answered."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from tests.conftest import NOTEBOOKS
from tests.service_support import Server, wait_for, worker_pids

ADVERSARIAL = NOTEBOOKS / "adversarial"


def grading_now(srv: Server) -> list[int]:
    return [r[0] for r in srv.rows("SELECT attempt_id FROM jobs WHERE state = 'grading'")]


def test_kill_9_of_the_server_while_grading_then_a_restart_loses_nothing_and_grades_nothing_twice(tmp_path):
    students = ["k1", "k2", "k3", "k4"]
    srv = Server(tmp_path, students, cell_timeout=5, total_timeout=40).setup().start()
    try:
        loop = (ADVERSARIAL / "infinite_loop.ipynb").read_bytes()
        ids = [srv.submit("k1", data=loop)["id"]] + [srv.submit(s, "correct")["id"] for s in students[1:]]
        # every upload answered 202 is already in the database file
        assert sorted(r[0] for r in srv.rows("SELECT id FROM attempts")) == sorted(ids)
        wait_for(lambda: grading_now(srv) == [ids[0]], 120)
        srv.stop(signal.SIGKILL)
        assert srv.rows("SELECT state FROM jobs WHERE attempt_id = ?".replace("?", str(ids[0]))) == [("grading",)]
        srv.start()  # (the same database: the job held by the dead worker goes back to the queue)
        for s, i in zip(students, ids):
            srv.wait_done(s, i, timeout=300)
    finally:
        srv.stop()
    assert worker_pids(srv.db) == []  # (stopped with SIGTERM, the server stopped its worker first)
    per_attempt = dict(srv.rows("SELECT j.attempt_id, count(r.job_id) FROM jobs j LEFT JOIN results r "
                                "ON r.job_id = j.id GROUP BY j.attempt_id"))
    assert per_attempt == {i: 1 for i in ids}  # exactly one result each: none lost, none twice
    assert srv.rows(f"SELECT tries FROM jobs WHERE attempt_id = {ids[0]}") == [(2,)]
    statuses = dict(srv.rows("SELECT a.user_id, r.status FROM attempts a JOIN jobs j ON j.attempt_id = a.id "
                             "JOIN results r ON r.job_id = j.id"))
    assert statuses == {"k1": "timeout", "k2": "graded", "k3": "graded", "k4": "graded"}


def test_a_worker_killed_twice_on_one_notebook_makes_it_one_error_row_with_the_reason(tmp_path):
    srv = Server(tmp_path, ["w1", "w2"], cell_timeout=20, total_timeout=60).setup().start()
    try:
        sub = srv.submit("w1", data=(ADVERSARIAL / "infinite_loop.ipynb").read_bytes())
        for _ in range(2):
            wait_for(lambda: grading_now(srv) == [sub["id"]] and worker_pids(srv.db), 120)
            time.sleep(1)
            for pid in worker_pids(srv.db):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: grading_now(srv) != [sub["id"]] or not worker_pids(srv.db), 30)
        done = srv.wait_done("w1", sub["id"], timeout=60)
        assert done["status"] == "error"
        assert done["reason"] == "the grading worker stopped 2 times while grading this notebook"
        # the next submission is graded by the restarted worker
        other = srv.submit("w2", "correct")
        assert srv.wait_done("w2", other["id"], timeout=240)["status"] == "graded"
    finally:
        srv.stop()
    assert srv.rows(f"SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.attempt_id = {sub['id']}") \
        == [(1,)]


def test_hostile_notebooks_are_one_row_each_while_another_students_status_page_keeps_answering(tmp_path):
    hostile = {"h1": "fork_bomb", "h2": "memory_bomb", "h3": "infinite_loop"}
    srv = Server(tmp_path, [*hostile, "calm"], jobs=2, cell_timeout=8, total_timeout=40).setup().start()
    try:
        calm = srv.wait_done("calm", srv.submit("calm", "correct")["id"], timeout=240)
        ids = {s: srv.submit(s, data=(ADVERSARIAL / f"{nb}.ipynb").read_bytes())["id"] for s, nb in hostile.items()}
        latencies: list[float] = []
        stop = threading.Event()

        def ask() -> None:
            with srv.api("calm") as c:
                while not stop.is_set():
                    t = time.monotonic()
                    r = c.get(f"/s/{calm['id']}")
                    assert r.status_code == 200
                    latencies.append(time.monotonic() - t)
                    time.sleep(0.2)

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            wait_for(lambda: len(grading_now(srv)) == 2, 120)  # (two hostile notebooks at once)
            results = {s: srv.wait_done(s, i, timeout=300) for s, i in ids.items()}
        finally:
            stop.set()
            asker.join()
        assert srv.proc.poll() is None and httpx.get(f"{srv.url}/api/health").status_code == 200
    finally:
        srv.stop()
    # the fork bomb and the loop end as error/timeout rows; the memory bomb's cell fails against
    # its memory limit (or its time limit, under load), its row keeps what the rest earned
    assert results["h1"]["status"] in ("error", "timeout") and results["h3"]["status"] == "timeout"
    assert results["h2"]["score"] < 11
    for i in ids.values():
        assert srv.rows(f"SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.attempt_id = {i}") \
            == [(1,)]
    assert len(latencies) >= 20
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5 and latencies[-1] < 3.0, latencies[-5:]


def test_a_regrade_after_a_spec_fix_grades_with_the_fixed_spec_and_keeps_the_old_result(tmp_path):
    import shutil

    from tests.batch_support import ASSIGNMENT
    from tests.conftest import ASSIGNMENTS

    folder = tmp_path / "course" / ASSIGNMENT
    shutil.copytree(ASSIGNMENTS / ASSIGNMENT, folder)
    srv = Server(tmp_path, ["f1"], assignment=str(folder)).setup().start()
    try:
        first = srv.wait_done("f1", srv.submit("f1", "correct")["id"])
        assert (first["score"], first["max_score"]) == (11.0, 11.0)
        spec = folder / "assignment.toml"
        text = spec.read_text()
        assert text.count('visibility = "hidden"\npoints = 2') >= 1
        spec.write_text(text.replace('visibility = "hidden"\npoints = 2', 'visibility = "hidden"\npoints = 4', 1))
        with srv.api("ta") as c:
            assert c.post(f"/api/assignments/{ASSIGNMENT}/regrade").json() == {"queued": 1}
        wait_for(lambda: srv.rows("SELECT count(*) FROM jobs WHERE state != 'done'") == [(0,)], 240)
        again = srv.wait_done("f1", first["id"])
    finally:
        srv.stop()
    assert (again["score"], again["max_score"]) == (13.0, 13.0)
    assert srv.rows(f"SELECT r.score, r.max_score FROM results r JOIN jobs j ON j.id = r.job_id "
                    f"WHERE j.attempt_id = {first['id']} ORDER BY j.round") == [(11.0, 11.0), (13.0, 13.0)]
