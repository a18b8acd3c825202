"""The service's grading on a Dask cluster (`grade serve --scheduler`, `grade worker
--scheduler`): the worker process takes jobs from the service's queue under its lease, as
many as the cluster has threads, and hands each to the cluster as one task, the batch's own
(grader.batch.run.grade_remote: the notebook's bytes travel in the task, the Dask worker grades
with its warm kernels); each result comes back here and is recorded under the lease.

A Dask worker that dies mid-grade: the scheduler runs the task again on another worker (the
job's second try, counted in the database); when a job's task has been on MAX_TRIES workers
that died, it is cancelled and recorded as an `error` row saying so, as the local worker does.
The scheduler's own count (its tasks' `suspicious`) says how many workers died running a task.
"""

from __future__ import annotations

import time
from typing import Any

from grader.errors import GraderError
from grader.service.store import MAX_TRIES, Claimed

POLL_S = 0.2
WATCH_S = 1.0  # how often the scheduler is asked which tasks lost a worker
SIZE_S = 5.0  # how often it is asked how many threads the cluster has


def _deaths(dask_scheduler: Any, keys: list[str]) -> dict[str, int]:
    """On the scheduler: how many workers died while running each of these tasks."""
    out = {}
    for key in keys:
        ts = dask_scheduler.tasks.get(key)
        if ts is not None:
            out[key] = int(getattr(ts, "suspicious", 0))
    return out


class DaskGrading:
    """Feeds the service's queue to a Dask cluster and records what comes back."""

    def __init__(self, worker: Any, address: str):
        """`worker`: the grader.service.worker.Worker whose lease, store and settings are used."""
        from grader.batch.run import connect

        self.worker, self.store = worker, worker.store
        self.client = connect(address)
        self.inflight: dict[str, tuple[Any, Claimed, int, int]] = {}  # key -> (future, job, seed, deaths seen)

    def window(self) -> int:
        """Jobs handed to the cluster at once: its threads (at least --jobs), so none waits idle."""
        try:
            threads = sum(self.client.nthreads().values())
        except Exception:
            threads = 0
        return max(self.worker.jobs, threads)

    def submit(self, job: Claimed) -> None:
        from grader.batch.run import grade_remote, submission_seed

        w = self.worker
        seed = submission_seed(w.batch_seed, job.sha256)
        try:
            asg, cell_s, cell_source = w.assignment(job.assignment)
            data = self.store.notebook(job.stored)
        except (GraderError, OSError) as e:
            w.fail(job, seed, str(e))
            return
        payload = {"files": {"submission.ipynb": data}, "graded_as": "submission.ipynb",
                   "assignment": w.sources.get(job.assignment, job.assignment), "spec_sha256": asg.spec_sha256,
                   "seed": seed, "cell_timeout": cell_s, "cell_timeout_source": cell_source,
                   "total_timeout": w.total_timeout, "isolation": w.isolation, "relpath": job.filename}
        key = f"nngrader-service-{w.lease}-{job.job_id}"
        fut = self.client.submit(grade_remote, payload, key=key, pure=False, retries=1)
        self.inflight[key] = (fut, job, seed, 0)

    def collect(self) -> None:
        """Record every task that ended (its result, or why it failed)."""
        for key, (fut, job, seed, _) in list(self.inflight.items()):
            if not fut.done():
                continue
            del self.inflight[key]
            try:
                out = fut.result()
            except Exception as e:  # the task failed on every worker it was tried on
                name = type(e).__name__
                reason = (f"the grading worker stopped {MAX_TRIES} times while grading this notebook"
                          if name == "KilledWorker" else f"the Dask task failed: {name}: {e}"[:1000])
                self.worker.fail(job, seed, reason)
                continue
            finally:
                fut.release()
            self.worker.record(job, seed, out["status"], out["reason"], out["report"], out["started"],
                               out["finished"])

    def watch(self) -> None:
        """Count each worker death under a task as a try of its job; past MAX_TRIES, give up."""
        if not self.inflight:
            return
        try:
            deaths = self.client.run_on_scheduler(_deaths, keys=list(self.inflight))
        except Exception:
            return  # (the scheduler away a moment: the next look counts)
        for key, n in deaths.items():
            fut, job, seed, seen = self.inflight[key]
            if n <= seen:
                continue
            if n >= MAX_TRIES:
                fut.cancel()
                del self.inflight[key]
                self.worker.fail(job, seed, f"the grading worker stopped {n} times while grading this notebook")
                continue
            self.inflight[key] = (fut, job, seed, n)
            # (the scheduler runs it again: one more try, as a job put back in the queue is)
            self.store.db.execute("UPDATE jobs SET tries = tries + ? WHERE id = ? AND lease = ?",
                                  (n - seen, job.job_id, self.worker.lease))

    def run(self) -> None:
        from grader.batch.dask_worker import WarmKernels

        # closes each Dask worker's warm launcher when that worker stops (tasks start it on first use)
        self.client.register_plugin(WarmKernels())
        last_watch = last_size = 0.0
        window = self.window()
        try:
            while self.worker.running():
                if time.monotonic() - last_size >= SIZE_S:  # (workers join and leave the cluster)
                    last_size, window = time.monotonic(), self.window()
                while len(self.inflight) < window:
                    job = self.store.claim(self.worker.lease)
                    if job is None:
                        break
                    self.submit(job)
                self.collect()
                if time.monotonic() - last_watch >= WATCH_S:
                    last_watch = time.monotonic()
                    self.watch()
                time.sleep(POLL_S)
        finally:
            self.client.close()
