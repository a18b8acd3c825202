"""Grading a batch: every submission in its own fresh kernel, N at a time, each result recorded
in the gradebook as soon as it is known; locally, or on a Dask cluster.

`grade_files` is the one place a submission is graded (locally and on Dask workers alike), so
a different kernel launcher applies to every batch by passing it there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.assignment.load import find_assignment
from grader.assignment.model import Assignment
from grader.batch.classview import keep_starter
from grader.batch.gradebook import Gradebook, Provenance, Result, now
from grader.batch.rescore import rescore_unchanged
from grader.batch.sources import Entry
from grader.errors import GraderError, SubmissionError
from grader.files import read_regular
from grader.grading.grade import grade_notebook_async
from grader.grading.limits import cell_limit
from grader.kernels import leftovers
from grader.kernels.launch import KernelLauncher
from grader.kernels.tracking import interruptible
from grader.options import MAX_SEED
from grader.report import Report, error_report
from grader.submission.notebook import MAX_NOTEBOOK_BYTES, read_notebook_bytes

if TYPE_CHECKING:
    from grader.grading.stages import EntrySource
    from grader.pool.child import Planner

# Kernel starts (and restarts after a dead kernel) are outside a submission's own time limit;
# past this much more, the grading of a submission is abandoned as hung.
HANG_GRACE_S = 120.0


def grader_version() -> str:
    """This grader's version, as recorded with each run."""
    try:
        from importlib.metadata import version

        return version("nngrader")
    except Exception:  # (run from a source tree that was never installed)
        return "0+unknown"


def submission_seed(batch_seed: int, sha256: str) -> int:
    """The seed of one submission: from the batch seed and its content, so a rerun replays it."""
    return int.from_bytes(hashlib.sha256(f"{batch_seed}:{sha256}".encode()).digest()[:4], "big")


@dataclass
class Settings:
    """How every submission of a batch is graded."""

    assignment: str  # id or folder, as given (workers look it up themselves)
    spec_sha256: str
    batch_seed: int
    cell_timeout: float = 30.0
    total_timeout: float = 300.0
    isolation: str | None = None
    cell_timeout_source: str = "option"  # where cell_timeout came from (see grading.limits)


@dataclass
class Job:
    """One submission to grade: who, what, and the files its workspace gets."""

    student: str
    name: str
    relpath: str
    graded_as: str
    sha256: str
    seed: int
    files: dict[str, Path] = field(default_factory=dict)  # name in the workspace -> source file
    problem: str | None = None
    provenance: Provenance = field(default_factory=Provenance)  # submission time, LMS name, fingerprints

    def payload(self) -> dict[str, bytes]:
        """The files' contents, to ship to a worker that cannot see them (regular files only)."""
        return {name: read_regular(p, MAX_NOTEBOOK_BYTES) for name, p in self.files.items()}


def make_job(entry: Entry, batch_seed: int) -> Job:
    """The job of an entry: the notebook's hash and seed, or the entry's problem."""
    from grader.course import similarity

    prov = Provenance(entry.submitted_at, entry.submitted_how, entry.marked_late, entry.lms_key)
    if entry.notebook is None:
        sha = hashlib.sha256((entry.problem or "").encode()).hexdigest()
        return Job(entry.student, entry.name, entry.relpath, "", sha, 0, problem=entry.problem, provenance=prov)
    try:  # a link, device or pipe is refused unread: its row says so, and nothing it names is hashed
        data = read_notebook_bytes(entry.notebook, entry.relpath)
    except SubmissionError as e:
        return Job(entry.student, entry.name, entry.relpath, "", "", 0, problem=str(e), provenance=prov)
    sha = hashlib.sha256(data).hexdigest()
    code = similarity.code_of(data)  # (for the similarity report: the code only, normalised)
    prov.code_sha256, prov.fingerprints = similarity.code_hash(code), similarity.encode(similarity.fingerprints(code))
    files = {**entry.companions, entry.graded_as: entry.notebook}
    return Job(entry.student, entry.name, entry.relpath, entry.graded_as, sha,
               submission_seed(batch_seed, sha), files, provenance=prov)


def environment(report: dict[str, Any]) -> dict[str, Any]:
    """Where a submission was graded: host, Python, and the kernel's isolation."""
    iso = (report.get("execution") or {}).get("isolation") or {}
    return {"host": socket.gethostname(), "python": platform.python_version(),
            "platform": sys.platform, "isolation": iso.get("level")}


def outcome(report: Report) -> tuple[str, str]:
    """A report's row status (graded, error or timeout) and the reason, in one line."""
    ex = report.execution

    def cells(ename: str) -> list[str]:
        return [f"cell {e.cell}: {e.evalue}" for e in ex.cell_errors if e.ename == ename]

    if report.status == "error":
        return "error", f"{report.error_stage or 'grading'}: {report.error or 'the grader failed'}"
    if ex.total_timed_out or ex.timed_out:
        why = cells("Timeout") + ex.limit_events
        if ex.total_timed_out:
            why.append(f"the submission's limit of {ex.limits.get('total_timeout_s', '?')} s was reached")
        return "timeout", "; ".join(why) or "a time limit was reached"
    if ex.kernel_died:
        return "error", "; ".join(cells("KernelDied") + ex.limit_events) or "the kernel died"
    return "graded", ""


async def grade_files(files: dict[str, bytes | Path], graded_as: str, assignment: str | Assignment,
                      seed: int, cell_timeout: float, total_timeout: float,
                      launcher: KernelLauncher, relpath: str,
                      entries: EntrySource | None = None,
                      cell_timeout_source: str = "option") -> tuple[str, str, dict[str, Any]]:
    """Grade one submission from its files: (status, reason, grader.report/1 dict). Never raises
    for a submission's fault: a crash or hang of its grading is an error or timeout result."""
    stage = Path(tempfile.mkdtemp(prefix=leftovers.prefix("grader-batch-")))
    asg_info: dict[str, Any] | None = None
    max_score = 0.0
    try:
        asg = assignment if isinstance(assignment, Assignment) else find_assignment(assignment)
        asg_info = {"id": asg.id, "version": asg.spec.version, "spec_sha256": asg.spec_sha256}
        max_score = asg.max_score
        for name, content in files.items():
            data = read_regular(content, MAX_NOTEBOOK_BYTES) if isinstance(content, Path) else content
            (stage / name).write_bytes(data)
        report = await asyncio.wait_for(
            grade_notebook_async(stage / graded_as, asg, seed=seed, cell_timeout=cell_timeout,
                                 total_timeout=total_timeout, launcher=launcher, entries=entries,
                                 cell_timeout_source=cell_timeout_source),
            timeout=total_timeout + HANG_GRACE_S)
        status, reason = outcome(report)
    except asyncio.TimeoutError:
        reason = f"hung: no result within {total_timeout + HANG_GRACE_S:g} s"
        report = error_report(relpath, reason, asg_info, max_score, stage="grading")
        report.seed = seed
        status = "timeout"
    except GraderError as e:  # not a notebook the grader can read, or an unknown assignment
        report = error_report(relpath, str(e), asg_info, max_score)
        report.seed = seed
        status, reason = "error", str(e)
    except Exception as e:  # the grader itself failed on this submission: a row, not a stop
        reason = f"the grader failed: {type(e).__name__}: {e}"
        report = error_report(relpath, reason, asg_info, max_score, stage="grading")
        report.seed, report.error_traceback = seed, traceback.format_exc()
        status = "error"
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    out = report.to_dict()
    # where the instructor has it, not the folder it was graded in
    out["submission"]["path"] = relpath
    if out.get("error"):
        out["error"] = out["error"].replace(str(stage / graded_as), relpath)
    reason = reason.replace(str(stage / graded_as), relpath).replace("\n", " ")[:1000]
    return status, reason, out


def _problem_result(job: Job, settings: Settings, asg: Assignment) -> Result:
    info = {"id": asg.id, "version": asg.spec.version, "spec_sha256": asg.spec_sha256}
    rep = error_report(job.relpath, job.problem or "", info, asg.max_score).to_dict()
    t = now()
    return Result(job.student, job.name, job.relpath, job.sha256, settings.batch_seed, job.seed, t, t,
                  "error", job.problem or "", rep, {"host": socket.gethostname()}, grader_version(), job.provenance)


def _result(job: Job, settings: Settings, status: str, reason: str, report: dict[str, Any],
            started: float, finished: float, env: dict[str, Any] | None = None) -> Result:
    return Result(job.student, job.name, job.relpath, job.sha256, settings.batch_seed, job.seed,
                  started, finished, status, reason, report, env or environment(report), grader_version(),
                  job.provenance)


def run_local(jobs: Iterable[Job], settings: Settings, asg: Assignment, book: Gradebook, jobs_n: int,
              on_result: Callable[[Result], None], launcher: KernelLauncher | None = None,
              plan_ahead: bool = True) -> None:
    """Grade `jobs` here, `jobs_n` at a time, recording each result as it comes; `plan_ahead`
    computes their reference values in a child process."""
    if launcher is None:
        # every kernel forked from one warm parent per kernel environment (cold where a fork
        # cannot be fenced in as well): a submission still gets a fresh, isolated process
        from grader.kernels.warm import WarmKernelLauncher

        with WarmKernelLauncher(isolation=settings.isolation) as warm:
            warm.ahead = max(1, jobs_n)  # the next submissions' kernels start while these are graded
            run_local(jobs, settings, asg, book, jobs_n, on_result, warm, plan_ahead)
        return
    jobs = list(jobs)
    todo: Iterator[Job] = iter(jobs)
    planner: Planner | None = None

    def finish(r: Result) -> None:
        book.record(r)
        on_result(r)

    async def worker() -> None:
        for job in todo:  # (one shared iterator: each job is taken by exactly one worker)
            if job.problem is not None:
                finish(_problem_result(job, settings, asg))
                continue
            started = now()
            try:
                status, reason, rep = await grade_files(
                    dict(job.files), job.graded_as, asg, job.seed, settings.cell_timeout,
                    settings.total_timeout, launcher, job.relpath, planner.entry if planner else None,
                    settings.cell_timeout_source)
            finally:
                if planner is not None:  # (its grading may have ended before it asked for its entry)
                    planner.discard(job.seed)
            finish(_result(job, settings, status, reason, rep, started, now()))

    async def main() -> None:
        from grader.kernels.teardown import in_background
        from grader.pool.child import Planner

        nonlocal planner
        task = asyncio.current_task()
        with interruptible(task):
            # a graded submission's kernels stop and its folders go while the next one is graded
            async with in_background():
                warming = asyncio.ensure_future(_start_ahead(launcher, asg))
                # each submission's reference values computed a few submissions ahead in a
                # child process, not in this one (where they took a third of its time)
                if plan_ahead:
                    planner = Planner(asg, (j.seed for j in jobs if j.problem is None), window=2 * max(1, jobs_n) + 2)
                try:
                    if planner is not None:
                        await planner.start()
                    await asyncio.gather(*(worker() for _ in range(max(1, jobs_n))))
                finally:
                    warming.cancel()
                    if planner is not None:
                        await planner.close()
                stop_ahead = getattr(launcher, "stop_ahead", None)
                if callable(stop_ahead):
                    await stop_ahead()

    _run_coroutine(main)


def _preload_reference(asg: Assignment) -> None:
    """Import the assignment's reference (and torch, seconds of it) in the background now, while
    the source is read and the first kernels start, rather than when the first submission needs
    its expected values."""
    def load() -> None:
        from grader.assignment.reference import Reference

        with contextlib.suppress(Exception):  # the first submission's grading reports it
            Reference(asg)

    threading.Thread(target=load, name="grader-preload", daemon=True).start()


async def _start_ahead(launcher: KernelLauncher, asg: Assignment) -> None:
    """Start the kernels a launcher keeps ahead (and so its warm parent) at once, for the
    assignment's environment, rather than when the first submission asks for a kernel."""
    from grader.grading.grade import bind_env
    from grader.kernels.envs import ensure_assignment_env

    try:
        env = await asyncio.to_thread(ensure_assignment_env, asg)
    except Exception:  # the first submission's grading reports it
        return
    start = getattr(bind_env(launcher, env), "start_ahead", None)
    if callable(start):
        start()


def _run_coroutine(main: Callable[[], Any]) -> None:
    from grader.kernels.tracking import cleanup_all, interrupted

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        if interrupted():
            cleanup_all()
            raise KeyboardInterrupt from None
        raise
    except (KeyboardInterrupt, SystemExit):
        cleanup_all()
        raise


# ---------------------------------------------------------------- Dask


def grade_remote(payload: dict[str, Any]) -> dict[str, Any]:
    """A Dask task: grade one submission on the worker that runs it (files come in the payload)."""
    from grader.batch.dask_worker import ready_torch, worker_launcher

    started = now()
    ready_torch()
    # the worker's own warm launcher, kept from task to task (cold where forking cannot be fenced)
    launcher = worker_launcher(payload.get("isolation"))
    status, reason, rep = asyncio.run(grade_files(
        payload["files"], payload["graded_as"], payload["assignment"], payload["seed"],
        payload["cell_timeout"], payload["total_timeout"], launcher, payload["relpath"],
        cell_timeout_source=payload.get("cell_timeout_source", "option")))
    if status != "error" and (rep.get("assignment") or {}).get("spec_sha256") != payload["spec_sha256"]:
        status, reason = "error", "the worker's copy of the assignment differs from the instructor's"
    start = str(((rep.get("execution") or {}).get("isolation") or {}).get("start") or "")
    how = ("forked" if start.startswith("forked") else "cold") if start else None
    env = environment(rep) | {"worker_pid": os.getpid(), "kernel_start": how}
    return {"status": status, "reason": reason, "report": rep, "started": started,
            "finished": now(), "environment": env}


def task_key(job: Job, settings: Settings) -> str:
    """The Dask key of a job: the same submission, spec and seed is the same task, never two."""
    h = hashlib.sha256(f"{job.student}\0{job.sha256}\0{settings.spec_sha256}\0{job.seed}".encode())
    return f"nngrader-grade-{h.hexdigest()[:32]}"


def connect(address: str) -> Any:
    """A Dask client of the scheduler at `address`; GraderError if it cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise GraderError("--scheduler needs dask.distributed: pip install 'nngrader[dask]'") from None
    try:
        return Client(address, timeout="30s")
    except (OSError, TimeoutError, ValueError) as e:
        raise GraderError(f"cannot reach the Dask scheduler at {address}: {e}") from None


def run_dask(jobs: Iterable[Job], settings: Settings, asg: Assignment, book: Gradebook, client: Any,
             on_result: Callable[[Result], None], window: int | None = None) -> None:
    """Grade `jobs` on the Dask cluster of `client`; results stream back into the gradebook here.

    Tasks of a worker that dies are rerun elsewhere by the scheduler; a task's result is
    recorded once, under the submission's own key.
    """
    from distributed import as_completed

    from grader.batch.dask_worker import WarmKernels

    # closes each worker's warm launcher when that worker stops (tasks start it on first use)
    client.register_plugin(WarmKernels())
    nthreads = sum(client.nthreads().values()) or 1
    window = window or 2 * nthreads
    todo = iter(jobs)
    pending: dict[str, Job] = {}
    done_keys: set[str] = set()
    queue = as_completed()

    def submit_next() -> bool:
        for job in todo:
            if job.problem is not None:
                r = _problem_result(job, settings, asg)
                book.record(r)
                on_result(r)
                continue
            key = task_key(job, settings)
            payload = {"files": job.payload(), "graded_as": job.graded_as,
                       "assignment": settings.assignment, "spec_sha256": settings.spec_sha256,
                       "seed": job.seed, "cell_timeout": settings.cell_timeout,
                       "cell_timeout_source": settings.cell_timeout_source,
                       "total_timeout": settings.total_timeout, "isolation": settings.isolation,
                       "relpath": job.relpath}
            fut = client.submit(grade_remote, payload, key=key, pure=False, retries=2)
            pending[key] = job
            queue.add(fut)
            return True
        return False

    for _ in range(window):
        if not submit_next():
            break
    for fut in queue:
        job = pending.pop(fut.key, None)
        if job is None or fut.key in done_keys:  # (a key seen twice is recorded once)
            continue
        done_keys.add(fut.key)
        try:
            out = fut.result()
            r = _result(job, settings, out["status"], out["reason"], out["report"],
                        out["started"], out["finished"], out["environment"])
        except Exception as e:  # the task failed on every worker it was tried on
            reason = f"the Dask task failed: {type(e).__name__}: {e}"[:1000]
            info = {"id": asg.id, "version": asg.spec.version, "spec_sha256": asg.spec_sha256}
            rep = error_report(job.relpath, reason, info, asg.max_score, stage="grading").to_dict()
            t = now()
            r = _result(job, settings, "error", reason, rep, t, t, {"host": "?"})
        fut.release()
        book.record(r)
        on_result(r)
        submit_next()


def new_batch_seed() -> int:
    """A fresh batch seed (kept in the gradebook, so later runs reuse it)."""
    return secrets.randbits(32)


@dataclass
class BatchSummary:
    """What a batch did: how many it graded now, skipped as already graded, and the row counts."""

    students: list[str]
    graded_now: int
    skipped: int
    counts: dict[str, int]
    rescored: int = 0  # re-scored from stored results: the spec only moved points or labels
    spec_note: str = ""  # the parts of the spec that changed, when that needed grading again

    @property
    def failed(self) -> int:
        """Submissions of this batch whose current result is an error or a timeout."""
        return self.counts.get("error", 0) + self.counts.get("timeout", 0)


def _regrade_set(regrade: bool | Iterable[str], jobs: list[Job]) -> set[str]:
    """The students to grade again (True: everyone), each checked to be in the source."""
    if isinstance(regrade, bool):
        return {j.student for j in jobs} if regrade else set()
    wanted = set(regrade)
    unknown = sorted(wanted - {j.student for j in jobs})
    if unknown:
        raise GraderError(f"--regrade {unknown[0]}: no such student in the source")
    return wanted


def grade_batch(source: str | Path, assignment: str | Assignment, db: str | Path, *,
                jobs: int | None = None, seed: int | None = None, cell_timeout: float | None = None,
                total_timeout: float = 300.0, isolation: str | None = None,
                regrade: bool | Iterable[str] = False,
                student_regex: str | None = None, scheduler: str | None = None,
                progress: Callable[[int, int], Any] | None = None,
                launcher: KernelLauncher | None = None, plan_ahead: bool = True,
                exclude: Iterable[Path] = ()) -> BatchSummary:
    """Grade every submission in `source` into the gradebook `db`; resumable (see docs/batch.md).

    `exclude`: paths inside `source` that are not submissions (the reports folder); the
    gradebook's own files never are.

    `plan_ahead`: compute the reference values in a child process, a few submissions ahead
    (torch's work out of the process that drives every kernel); the results are the same either way.

    `cell_timeout` (seconds per cell) overrides the assignment's limit (its spec's, else the one
    measured from its solution, else 30 s; see grading.limits).

    `regrade`: True grades everything again; a list of student ids grades those again (and
    whatever is new or changed), and an id that is in neither SOURCE nor the gradebook is refused.

    `progress(total, skipped)` makes the object told of each result (`.add(result)`, `.close()`).
    Raises GraderError for an unusable source, assignment or gradebook.
    """
    from grader.batch.sources import collect

    asg = assignment if isinstance(assignment, Assignment) else find_assignment(str(assignment))
    if not scheduler:
        _preload_reference(asg)
    book = Gradebook(Path(db))
    try:
        held = book.meta("assignment")
        if held is not None and held != asg.id:
            raise GraderError(f"{db} is the gradebook of {held}, not {asg.id}: use another --db")
        stored = book.meta("batch_seed")
        try:
            batch_seed = int(seed) if seed is not None else int(stored) if stored is not None else new_batch_seed()
        except ValueError:
            raise GraderError(f"{db}: its batch seed {stored!r} is not a number (give --seed)") from None
        if not 0 <= batch_seed <= MAX_SEED:
            raise GraderError(f"batch seed {batch_seed} is out of range (0 to {MAX_SEED})")
        book.set_meta("assignment", asg.id)
        book.set_meta("batch_seed", str(batch_seed))
        keep_starter(book, asg)
        cell_seconds, cell_source = cell_limit(asg, cell_timeout)  # once, for every worker alike
        settings = Settings(assignment=str(assignment if isinstance(assignment, str) else asg.id),
                            spec_sha256=asg.spec_sha256, batch_seed=batch_seed,
                            cell_timeout=cell_seconds, total_timeout=total_timeout, isolation=isolation,
                            cell_timeout_source=cell_source)
        leftovers.sweep()  # what killed graders left (their workspaces, staging folders, cgroups)
        with tempfile.TemporaryDirectory(prefix=leftovers.prefix("grader-batch-src-")) as unpack:
            own = [Path(f"{db}{end}") for end in ("", "-wal", "-shm", "-journal")]
            entries = collect(Path(source), student_regex, Path(unpack) / "src", exclude=[*own, *exclude])
            all_jobs = [make_job(e, batch_seed) for e in entries]
            again = _regrade_set(regrade, all_jobs)
            todo = [j for j in all_jobs if j.student in again or not book.is_current(
                j.student, j.sha256, asg.spec_sha256, batch_seed)]
            todo, rescored, spec_note = rescore_unchanged(book, asg, todo, batch_seed, again)
            client = connect(scheduler) if scheduler and todo else None
            if client is None and any(j.problem is None for j in todo):
                # built here, once, before the progress bar (its own progress shows): an
                # environment that cannot be built stops the batch in one line, rather than
                # failing (or building again for) every submission
                from grader.kernels.envs import ensure_assignment_env

                ensure_assignment_env(asg)
            bar = progress(len(todo), len(all_jobs) - len(todo)) if progress else None
            on_result = bar.add if bar is not None else (lambda r: None)
            try:
                if client is not None:
                    run_dask(todo, settings, asg, book, client, on_result)
                else:
                    run_local(todo, settings, asg, book, jobs or os.cpu_count() or 1, on_result, launcher,
                              plan_ahead)
            except sqlite3.Error as e:  # (a full disk, a gradebook removed under us)
                raise GraderError(f"cannot write the gradebook {db}: {e}") from None
            finally:
                if bar is not None:
                    bar.close()
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
        students = [j.student for j in all_jobs]
        counts: dict[str, int] = {}
        wanted = set(students)
        for row in book.current():
            if row.student in wanted:
                counts[row.status] = counts.get(row.status, 0) + 1
        return BatchSummary(students, len(todo), len(all_jobs) - len(todo) - rescored, counts, rescored, spec_note)
    finally:
        book.close()
