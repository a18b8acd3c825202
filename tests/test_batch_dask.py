"""`grade batch --scheduler`: a real Dask scheduler and two workers on loopback, started here."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from grader.batch.run import grade_batch
from grader.kernels.warm import WarmKernelLauncher
from tests.batch_support import ASSIGNMENT, make_flat, notebook_bytes
from tests.dask_support import loopback_cluster
from tests.service_support import free_port
from tests.test_batch import batch_with_a_first_result, current, run_count
from tests.torch_failure import torch_fails_once

ROOT = Path(__file__).resolve().parent.parent
# A warm parent's command line (it and the keepers and kernels forked from it carry it).
WARM_PARENT = "PRELOAD = ("
WARM = WarmKernelLauncher().warm  # whether kernels can be forked here (root and the sandbox level)
KINDS = ["correct", "sign", "scaled", "starter", "broken", "hostile", "forbidden", "correct", "sign", "starter"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A loopback scheduler and two workers for the module."""
    with loopback_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


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
    starts = {json.loads(e)["kernel_start"] for e in envs} - {None}  # (None: never reached a kernel)
    assert starts == ({"forked"} if WARM else {"cold"})
    if WARM:  # every kernel of the cluster forked from one warm parent per worker, kept between tasks
        with sqlite3.connect(tmp_path / "dask.sqlite") as c:
            reports = [json.loads(r) for (r,) in c.execute("SELECT report FROM runs")]
        kernels = [r for r in reports if r["execution"].get("isolation")]
        assert kernels and all(r["execution"]["isolation"]["start"].startswith("forked from a warm parent")
                               for r in kernels)


def test_dying_worker_loses_and_duplicates_nothing(cluster, submissions, tmp_path: Path) -> None:
    db = tmp_path / "gb.sqlite"
    proc = batch_with_a_first_result([str(submissions), "-a", ASSIGNMENT, "--db", str(db), "--seed", "77",
                                      "--timeout", "10", "--total-timeout", "60", "--scheduler",
                                      cluster["address"]], db)
    assert proc.poll() is None, "the batch finished before a worker could be killed"
    victim = cluster["workers"][0]
    warm = warm_processes(victim.pid)
    os.kill(victim.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, err  # (the broken and hostile notebooks)
    rows = current(db)
    assert sorted(rows) == [f"d{i:02d}" for i in range(len(KINDS))]
    assert run_count(db) == len(KINDS)  # every submission recorded once
    reference = tmp_path / "local.sqlite"
    grade_batch(submissions, ASSIGNMENT, reference, jobs=2, seed=77, cell_timeout=10, total_timeout=60)
    assert rows == current(reference)
    # the killed worker's warm parent and what was forked from it went with it
    assert bool(warm) == WARM
    assert running(warm) == []


def test_unreachable_scheduler_is_one_line(submissions, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", "from grader.cli import main; main()", "batch", str(submissions),
                        "-a", ASSIGNMENT, "--db", str(tmp_path / "gb.sqlite"),
                        "--scheduler", f"tcp://127.0.0.1:{free_port()}"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("grade: error: cannot reach the Dask scheduler")
    assert r.stderr.count("\n") == 1


def warm_processes(pid: int, direct: bool = False) -> list[psutil.Process]:
    """The warm parents a process started (and, unless `direct`, what was forked from them)."""
    out = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(pid).children(recursive=not direct):
            with contextlib.suppress(psutil.Error):
                if any(WARM_PARENT in a for a in p.cmdline()):
                    out.append(p)
    return out


def running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (not zombies)."""
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def test_a_stopped_worker_leaves_no_warm_parent_sandbox_or_user(tmp_path: Path) -> None:
    if not WARM:
        pytest.skip("kernels cannot be forked here: workers start them cold")
    src = make_flat(tmp_path / "src", [("e00", "correct"), ("e01", "loop"), ("e02", "correct")])
    tmp = tmp_path / "tmp"  # the workers' temporary folder: what they leave is found there
    tmp.mkdir()
    with loopback_cluster(tmp_path / "dask", workers=1, TMPDIR=str(tmp)) as c:
        grade_batch(src, ASSIGNMENT, tmp_path / "gb.sqlite", seed=5, scheduler=c["address"],
                    cell_timeout=10, total_timeout=60)
        worker = c["workers"][0]
        parents = warm_processes(worker.pid, direct=True)
        assert len(parents) == 1  # kept after the tasks, for the next ones
        with sqlite3.connect(tmp_path / "gb.sqlite") as db:
            envs = [json.loads(e) for (e,) in db.execute("SELECT environment FROM runs")]
        assert [e["kernel_start"] for e in envs] == ["forked"] * 3
        warm = warm_processes(worker.pid)
        worker.terminate()  # a worker's normal shutdown
        worker.wait(timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(warm):
        time.sleep(0.1)
    assert running(warm) == []
    assert list(tmp.iterdir()) == []  # workspaces, kernels' folders


def test_one_worker_forks_every_kernel_from_the_same_parent(cluster, tmp_path: Path) -> None:
    # two batches in a row on the same cluster: the second reuses the workers' warm parents
    # (registering the shutdown plugin again must not close them)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f00.ipynb").write_bytes(notebook_bytes("correct", "f00"))
    (src / "f01.ipynb").write_bytes(notebook_bytes("sign", "f01"))
    grade_batch(src, ASSIGNMENT, tmp_path / "a.sqlite", seed=3, scheduler=cluster["address"])
    workers = [w.pid for w in cluster["workers"] if w.poll() is None]
    parents = {p.pid for w in workers for p in warm_processes(w, direct=True)}
    grade_batch(src, ASSIGNMENT, tmp_path / "b.sqlite", seed=4, scheduler=cluster["address"])
    after = {w: {p.pid for p in warm_processes(w, direct=True)} for w in workers}
    if WARM:
        assert parents and parents <= set().union(*after.values())  # still the same ones
        assert all(len(ps) <= 1 for ps in after.values())  # one per worker (one environment)
    assert current(tmp_path / "b.sqlite")["f00"][:2] == ("graded", 11.0)


def test_a_worker_whose_torch_fails_to_import_hands_its_tasks_to_the_others(submissions, tmp_path: Path) -> None:
    shim = torch_fails_once(tmp_path / "shim", "dask")
    broken = {0: {"PYTHONPATH": f"{shim}{os.pathsep}{ROOT}"}}
    opts = {"seed": 77, "cell_timeout": 10, "total_timeout": 60}
    with loopback_cluster(tmp_path / "dask", per_worker=broken) as c:
        remote = grade_batch(submissions, ASSIGNMENT, tmp_path / "dask.sqlite", scheduler=c["address"], **opts)
        c["workers"][0].wait(timeout=120)  # the broken worker left the cluster (and its process ended)
        assert c["workers"][1].poll() is None
        healthy = c["workers"][1].pid
    assert remote.graded_now == len(KINDS) and run_count(tmp_path / "dask.sqlite") == len(KINDS)
    local = grade_batch(submissions, ASSIGNMENT, tmp_path / "local.sqlite", jobs=2, **opts)
    assert current(tmp_path / "dask.sqlite") == current(tmp_path / "local.sqlite")  # no row says "torch"
    with sqlite3.connect(tmp_path / "dask.sqlite") as db:
        pids = {json.loads(e)["worker_pid"] for (e,) in db.execute("SELECT environment FROM runs")}
    assert pids == {healthy} and local.counts == remote.counts


def test_when_every_worker_fails_to_import_torch_the_batch_ends_with_the_reason(submissions, tmp_path: Path) -> None:
    shim = torch_fails_once(tmp_path / "shim", "dask")
    src = tmp_path / "src"
    src.mkdir()
    (src / "g00.ipynb").write_bytes(notebook_bytes("correct", "g00"))
    with loopback_cluster(tmp_path / "dask", workers=1, PYTHONPATH=f"{shim}{os.pathsep}{ROOT}") as c:
        summary = grade_batch(src, ASSIGNMENT, tmp_path / "gb.sqlite", seed=1, scheduler=c["address"],
                              cell_timeout=10, total_timeout=60)
        assert c["workers"][0].poll() is None  # the last worker stays: the batch is not left waiting
    assert summary.counts == {"error": 1}
    (status, score, reason, *_) = current(tmp_path / "gb.sqlite")["g00"]
    assert status == "error" and "torch failed to import" in reason and "out of memory" in reason
