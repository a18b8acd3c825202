"""`grade batch --scheduler`: a real Dask scheduler and two workers on loopback, started here."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from grader.batch.run import grade_batch
from tests.batch_support import ASSIGNMENT, make_flat
from tests.test_batch import batch_with_a_first_result, current, run_count

ROOT = Path(__file__).resolve().parent.parent
DASK_CLI = str(Path(sys.executable).parent / "dask")  # the `dask` command of this environment
DASK = [DASK_CLI, "scheduler"]
WORKER = [DASK_CLI, "worker"]
KINDS = ["correct", "sign", "scaled", "starter", "broken", "hostile", "forbidden", "correct", "sign", "starter"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_workers(address: str, n: int, timeout: float = 180) -> None:
    from distributed import Client

    with Client(address, timeout="60s") as c:
        c.wait_for_workers(n, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes (one thread each, no nanny) on 127.0.0.1."""
    d = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([*DASK, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                               "127.0.0.1:0"], env=env, cwd=d, stdout=subprocess.DEVNULL,
                              stderr=open(d / "scheduler.log", "w"))]
    try:
        for i in range(2):
            procs.append(subprocess.Popen(
                [*WORKER, address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny", "--no-dashboard",
                 "--name", f"w{i}", "--local-directory", str(d / f"w{i}")],
                env=env, cwd=d, stdout=subprocess.DEVNULL, stderr=open(d / f"worker{i}.log", "w")))
        _wait_workers(address, 2)
        yield {"address": address, "workers": procs[1:], "dir": d}
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    src = tmp_path_factory.mktemp("class") / "src"
    return make_flat(src, [(f"d{i:02d}", k) for i, k in enumerate(KINDS)])


def test_cluster_gradebook_equals_local(cluster, submissions, tmp_path: Path) -> None:
    opts = {"seed": 77, "cell_timeout": 10, "total_timeout": 60}
    local = grade_batch(submissions, ASSIGNMENT, tmp_path / "local.sqlite", jobs=2, **opts)
    remote = grade_batch(submissions, ASSIGNMENT, tmp_path / "dask.sqlite", scheduler=cluster["address"], **opts)
    assert remote.students == local.students and remote.counts == local.counts
    assert remote.graded_now == len(KINDS)
    a, b = current(tmp_path / "local.sqlite"), current(tmp_path / "dask.sqlite")
    assert a == b  # status, score, reason, seed and every check's result
    assert {s for s, (status, *_) in a.items() if status == "error"} == {"d04", "d05"}
    with sqlite3.connect(tmp_path / "dask.sqlite") as c:
        envs = [e for (e,) in c.execute("SELECT environment FROM runs")]
    assert len(envs) == len(KINDS) and all('"worker_pid"' in e for e in envs)  # graded on workers


def test_dying_worker_loses_and_duplicates_nothing(cluster, submissions, tmp_path: Path) -> None:
    db = tmp_path / "gb.sqlite"
    proc = batch_with_a_first_result([str(submissions), "-a", ASSIGNMENT, "--db", str(db), "--seed", "77",
                                      "--timeout", "10", "--total-timeout", "60", "--scheduler",
                                      cluster["address"]], db)
    assert proc.poll() is None, "the batch finished before a worker could be killed"
    victim = cluster["workers"][0]
    os.kill(victim.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 3, err  # (the broken and hostile notebooks)
    rows = current(db)
    assert sorted(rows) == [f"d{i:02d}" for i in range(len(KINDS))]
    assert run_count(db) == len(KINDS)  # every submission recorded once
    reference = tmp_path / "local.sqlite"
    grade_batch(submissions, ASSIGNMENT, reference, jobs=2, seed=77, cell_timeout=10, total_timeout=60)
    assert rows == current(reference)


def test_unreachable_scheduler_is_one_line(submissions, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", "batch", str(submissions),
                        "-a", ASSIGNMENT, "--db", str(tmp_path / "gb.sqlite"),
                        "--scheduler", f"tcp://127.0.0.1:{_free_port()}"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("grade: error: cannot reach the Dask scheduler")
    assert r.stderr.count("\n") == 1
