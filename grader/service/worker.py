"""The service's grading worker: a process of its own, grading `--jobs` queued submissions at
a time through the batch's own path (grader.batch.run.grade_files, kernels forked from a warm
parent), or handing them to a Dask cluster (grader.service.dask_grading).

Started and watched by `grade serve` (`python -m grader.service.worker`), it dies with its
server (PR_SET_PDEATHSIG, and a check of its parent); started by `grade worker` on any host that
reaches a PostgreSQL database, it runs until stopped. Either way it renews its lease every
BEAT_S, takes back the jobs of leases that are gone, and records a result only while its lease
on the job holds (grader.service.store): a worker left behind can never record a result that
was given to another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from grader.errors import GraderError
from grader.service.store import BEAT_S, HOST, Claimed, Store

POLL_S = 0.2
NICE = 5
RECOVER_EVERY = 3  # beats between two looks for the jobs of leases that are gone


def die_with_parent() -> None:
    """Ask Linux to kill this process when its parent (the server) dies, however it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def failure_report(filename: str, reason: str, assignment: str) -> dict[str, Any]:
    """The report of an attempt that could not be graded (an `error` row)."""
    from grader.report import error_report

    return error_report(filename, reason, {"id": assignment}, 0.0, stage="grading").to_dict()


class Worker:
    """Grades queued jobs, `jobs` at a time, until told to stop."""

    def __init__(self, db: Path | str, lease: str, jobs: int, cell_timeout: float | None, total_timeout: float,
                 isolation: str | None, sources: dict[str, str] | None = None, watch_parent: bool = True):
        self.store = Store(db)
        self.db = db
        self.sources = sources or {}  # assignment id -> what `grade serve` was given (an id or a folder)
        self.lease, self.jobs = lease, max(1, jobs)
        self.cell_timeout, self.total_timeout, self.isolation = cell_timeout, total_timeout, isolation
        self.batch_seed = int(self.store.meta_default("batch_seed", lambda: 0))
        self.parent = os.getppid() if watch_parent else None
        self.assignments: dict[str, Any] = {}
        self.stopping = threading.Event()
        self.store.register(lease)

    def running(self) -> bool:
        """Until stopped, or (started by a server) until that server is gone."""
        return not self.stopping.is_set() and (self.parent is None or os.getppid() == self.parent)

    def heartbeat(self) -> None:
        """Renew the lease every BEAT_S and take back the jobs of leases that are gone (on a
        connection of its own: a long transaction elsewhere must not stop the beat)."""
        store, n = Store(self.db), 0
        try:
            while not self.stopping.wait(BEAT_S):
                with contextlib.suppress(Exception):  # (the database away a moment: the next beat tries again)
                    store.beat(self.lease)
                    n += 1
                    if n % RECOVER_EVERY == 0:
                        store.recover(failure_report)
        finally:
            store.close()

    def start_heartbeat(self) -> None:
        threading.Thread(target=self.heartbeat, name="grader-lease", daemon=True).start()

    def assignment(self, name: str) -> tuple[Any, float, str]:
        """The assignment and its cell limit, read again for every job (a few ms): a spec fixed
        on disk is the one a regrade uses."""
        from grader.assignment.load import find_assignment
        from grader.grading.limits import cell_limit

        asg = find_assignment(self.sources.get(name, name))
        key = (name, asg.spec_sha256)
        if key not in self.assignments:
            self.assignments[key] = cell_limit(asg, self.cell_timeout)
        return (asg, *self.assignments[key])

    async def grade(self, job: Claimed, launcher: Any) -> None:
        from grader.batch.run import grade_files, submission_seed

        started = time.time()
        seed = submission_seed(self.batch_seed, job.sha256)
        try:
            asg, cell_s, cell_source = self.assignment(job.assignment)
            data = self.store.notebook(job.stored)
            status, reason, report = await grade_files(
                {"submission.ipynb": data}, "submission.ipynb", asg, seed, cell_s, self.total_timeout, launcher,
                job.filename, cell_timeout_source=cell_source)
        except (GraderError, OSError) as e:  # an assignment no longer found, a stored file gone
            self.fail(job, seed, str(e))
            return
        self.record(job, seed, status, reason, report, started, time.time())

    def record(self, job: Claimed, seed: int, status: str, reason: str, report: dict[str, Any],
               started: float, finished: float) -> None:
        """A job's result, under this worker's lease."""
        report.pop("error_traceback", None)  # (kept out of every page: the grader's own internals)
        self.store.finish(job.job_id, self.lease, status, reason, report, started, finished, seed)

    def fail(self, job: Claimed, seed: int, reason: str) -> None:
        """A job that could not be graded: an `error` row saying why."""
        t = time.time()
        self.record(job, seed, "error", reason, failure_report(job.filename, reason, job.assignment), t, t)

    async def loop(self) -> None:
        from grader.kernels.teardown import in_background
        from grader.kernels.warm import WarmKernelLauncher

        with WarmKernelLauncher(isolation=self.isolation) as launcher:
            launcher.ahead = self.jobs
            async with in_background():
                await asyncio.gather(*(self.slot(launcher) for _ in range(self.jobs)))

    async def slot(self, launcher: Any) -> None:
        while self.running():
            job = await asyncio.to_thread(self.store.claim, self.lease)
            if job is None:
                await asyncio.sleep(POLL_S)
                continue
            await self.grade(job, launcher)


def give_back(db: Path | str, lease: str) -> None:
    with contextlib.suppress(Exception):
        store = Store(db)
        store.release(lease)
        store.close()


def new_lease() -> str:
    """A lease no other worker holds: this host and process, and a random part."""
    return f"{HOST}-{os.getpid()}-{secrets.token_hex(6)}"


def run(db: Path | str, lease: str, jobs: int, cell_timeout: float | None, total_timeout: float,
        isolation: str | None, sources: dict[str, str], scheduler: str | None = None,
        watch_parent: bool = True) -> None:
    """Grade until stopped (SIGTERM, Ctrl-C) or, started by a server, until it is gone."""
    # grading is batch work: the server answering students goes first when the cores are busy
    # (the kernels, forked from here, inherit it)
    with contextlib.suppress(OSError):
        os.nice(NICE)

    def stop(signum: int, frame: Any) -> None:  # stopped: no kernel left running, the jobs given back
        from grader.kernels.tracking import cleanup_all

        cleanup_all()
        # (on a connection of its own, in a thread with a time limit: this handler may have
        # interrupted a transaction of this very thread; if so, the jobs are taken back later)
        t = threading.Thread(target=give_back, args=(db, lease), daemon=True)
        t.start()
        t.join(5)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    from grader.kernels import leftovers

    leftovers.sweep()  # what a killed worker left (its workspaces, cgroups)
    worker = Worker(db, lease, jobs, cell_timeout, total_timeout, isolation, sources, watch_parent)
    worker.start_heartbeat()
    try:
        if scheduler:
            from grader.service.dask_grading import DaskGrading

            DaskGrading(worker, scheduler).run()
        else:
            asyncio.run(worker.loop())
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        worker.stopping.set()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grader.service.worker")
    p.add_argument("db")
    p.add_argument("--lease", required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--cell-timeout", type=float, default=None)
    p.add_argument("--total-timeout", type=float, default=300.0)
    p.add_argument("--isolation", default=None)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--assignment", action="append", default=[], metavar="ID=SOURCE")
    a = p.parse_args(argv)
    die_with_parent()
    sources = dict(x.split("=", 1) for x in a.assignment)
    run(a.db, a.lease, a.jobs, a.cell_timeout, a.total_timeout, a.isolation, sources, a.scheduler)


if __name__ == "__main__":
    main()
