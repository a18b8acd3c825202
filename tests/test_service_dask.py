"""`grade serve --scheduler`: the service on PostgreSQL grading on a real Dask cluster (a
scheduler and two workers on loopback). A Dask worker killed mid-grade: the job's task runs
again on the other worker (its second try, counted in the database); killed there too, the
job is one `error` row saying so; the web process answers all along."""

from __future__ import annotations

import os
import signal

import httpx

from tests.conftest import NOTEBOOKS
from tests.dask_support import loopback_cluster, processing, worker_pids
from tests.service_support import Server, wait_for

LOOP = (NOTEBOOKS / "adversarial" / "infinite_loop.ipynb").read_bytes()


def running_on(address: str, job_id: int) -> str | None:
    """The Dask worker running this job's task now, if any."""
    for worker, keys in processing(address).items():
        if any(k.startswith("nngrader-service-") and k.endswith(f"-{job_id}") for k in keys):
            return worker
    return None


def test_a_dask_worker_killed_mid_grade_gives_the_job_one_more_try_then_an_error_row(pg_url, tmp_path):
    with loopback_cluster(tmp_path / "dask", workers=2) as cluster:
        address = cluster["address"]
        srv = Server(tmp_path, ["d1", "d2"], cell_timeout=60, total_timeout=120, database=pg_url,
                     extra=["--scheduler", address]).setup().start()
        try:
            ok = srv.submit("d2", "correct")["id"]
            assert srv.wait_done("d2", ok, timeout=300)["status"] == "graded"
            loop = srv.submit("d1", data=LOOP)["id"]
            (job,) = srv.rows(f"SELECT id FROM jobs WHERE attempt_id = {loop}")
            for tries in (1, 2):
                wait_for(lambda: running_on(address, job[0]) is not None, 120)
                victim = running_on(address, job[0])
                os.kill(worker_pids(address)[victim], signal.SIGKILL)
                wait_for(lambda t=tries: srv.rows(f"SELECT tries FROM jobs WHERE id = {job[0]}")[0][0] > t
                         or srv.rows(f"SELECT state FROM jobs WHERE id = {job[0]}")[0][0] == "done", 60)
                # the web process is not the one grading: it answers while the cluster recovers
                assert httpx.get(f"{srv.url}/api/health", timeout=10).json()["ok"]
            done = srv.wait_done("d1", loop, timeout=60)
        finally:
            srv.stop()
    assert (done["status"], done["reason"]) == ("error", "the grading worker stopped 2 times while grading this "
                                                          "notebook")
    per_attempt = dict(srv.rows("SELECT j.attempt_id, count(r.job_id) FROM jobs j LEFT JOIN results r"
                                " ON r.job_id = j.id GROUP BY j.attempt_id"))
    assert per_attempt == {ok: 1, loop: 1}


def test_an_unreachable_scheduler_stops_grade_serve_in_one_line(tmp_path):
    srv = Server(tmp_path, ["d1"], extra=["--scheduler", "tcp://127.0.0.1:1"]).setup()
    try:
        srv.start()
    except RuntimeError as e:
        log = str(e)
    else:
        srv.stop()
        raise AssertionError("grade serve started without its scheduler")
    assert log.startswith("grade: error: cannot reach the Dask scheduler at tcp://127.0.0.1:1") and log.count("\n") == 1
