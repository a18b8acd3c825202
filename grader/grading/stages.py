"""The stages of grading one notebook, once its first kernel is starting: execute, probe, judge,
check consistency, localise, check imports, re-run on a fresh sample, score.

`grade_notebook_async` (grade.py) reads the submission's JSON, resolves the assignment, starts
the first run's kernel, and only then imports this module: what it loads (nbformat, numpy, the
pool, the probes, judging, the re-run, nbclient) loads while that kernel boots. `grade_started`
then validates the notebook, draws the run's seed and makes the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nbformat import NotebookNode

from grader.assignment.model import Assignment
from grader.assignment.reference import Reference, ReferenceLike
from grader.assignment.tables import Check, Policy
from grader.errors import GraderError
from grader.grading.selection import check_points, selection_info
from grader.inert import inert, inert_block
from grader.judging.consistency import check_consistency
from grader.judging.hidden import hidden_view
from grader.judging.judge import judge
from grader.judging.labels import label_results
from grader.judging.localise import localise
from grader.judging.rerun import rerun_given, rerun_possible
from grader.judging.rerun_sample import note_reassigned
from grader.judging.score import total
from grader.judging.snapshots import Snapshots
from grader.kernels.envs import KernelEnv
from grader.kernels.launch import KernelLauncher
from grader.kernels.standby import StandbyKernel
from grader.kernels.workspace import make_workspace
from grader.plan.checks import CheckPlan, plan, probe_items
from grader.pool.child import Builder, Planner
from grader.pool.store import Entry, PooledReference, choose_seed, pool_key, read_entry
from grader.report import CellError, CheckResult, Diagnosis, Execution, Flag, Report
from grader.run.budget import Budget
from grader.run.client import MAX_CELL_OUTPUT_BYTES
from grader.run.execute import execute
from grader.run.imports import forbidden_imports
from grader.run.probe import Answer, locate, new_module_name, prelude_source, probe_request, send
from grader.run.record import CellRun, ExecutionRecord, unrun_definitions
from grader.run.session import Session
from grader.run.tolerant import tolerant_imports
from grader.submission.notebook import OpenedNotebook, Submission

# a run's pool entry computed elsewhere, by seed (None: compute it here)
EntrySource = Callable[[int], Awaitable[Entry | None]]


@dataclass
class Run:
    """One grading run's settings, and how far it got (for a report of a failure)."""

    launcher: KernelLauncher
    cell_timeout: float
    total_timeout: float
    cell_timeout_source: str = "option"  # option | spec | measured | default
    stage: str = "planning the checks"
    session: Session | None = None
    checks: list[Check] | None = None  # the checks to grade (None: all)
    pool: Builder | None = None  # fills the assignment's incomplete pool while this run lasts
    entries: EntrySource | None = None  # the run's pool entry, computed elsewhere


async def grade_started(opened: OpenedNotebook, asg: Assignment, run: Run, first: StandbyKernel,
                        second: StandbyKernel | None, seed: int | None, checks: Sequence[str] | None,
                        public_only: bool, env: KernelEnv) -> Report:
    """The report on the notebook `opened`: its first run in `first` (its kernel started), the
    re-run in `second` (see rerun_kernel), then the stages after them; SubmissionError if the
    notebook is not a valid one.

    Without a seed the run draws one from the assignment's pool; `checks` and `public_only`
    are the selection (`run.checks` the checks it chose)."""
    # (the caller discards both kernels where no stage took them)
    submission = opened.submission()
    if second is not None and not rerun_possible(submission, asg):  # it assigns nothing a re-run reads
        await second.discard()
        second = None
    return await _graded(submission, asg, run, first, second, seed, checks, public_only, env)


async def _graded(submission: Submission, asg: Assignment, run: Run, first: StandbyKernel,
                  standby: StandbyKernel | None, seed: int | None, checks: Sequence[str] | None,
                  public_only: bool, env: KernelEnv) -> Report:
    chosen = asg.spec.checks if run.checks is None else run.checks
    # a run without a seed draws one from the assignment's pool, whose entries need no torch
    seed, fill_pool = choose_seed(asg) if seed is None else (int(seed), False)
    report = Report(
        assignment=asg.info(),
        submission={"path": str(submission.path), "sha256": submission.sha256},
        seed=seed,
        max_score=sum(check_points(c) for c in chosen),
        selection=selection_info(asg, checks, public_only),
        environment=env.describe(),
    )
    # Without a complete pool, this run's entry is computed in a child process from the start:
    # torch loads there, on another core, while this process drives the kernel (in a thread of
    # this process it held the interpreter lock the kernel's driving needs, and a first grade
    # cost about 2.8x the floor). A child that cannot help: live here.
    planner = Planner(asg, [seed], window=1) if fill_pool and run.entries is None else None
    if planner is not None:
        await planner.start()
        run.entries = planner.entry
    run.pool = Builder(asg) if fill_pool else None
    try:
        await grade_stages(report, run, submission, asg, first, standby)
    finally:
        if planner is not None:
            await planner.close()
    label_results(report.checks, asg.spec.checks)
    # the one place every output's hidden results pass through: only grader-side facts stay
    report.checks = [hidden_view(c) for c in report.checks]
    return report


async def grade_stages(report: Report, run: Run, submission: Submission, asg: Assignment,
                       first: StandbyKernel, standby: StandbyKernel | None) -> None:
    """Every stage of grading, the first run in `first` (its kernel started, its workspace still
    empty); each stage adds what it finds to `report` as it goes, a failure its error."""
    try:
        try:
            await _stages(report, run, submission, asg, first, standby)
        finally:
            if run.pool is not None:  # entries written so far stay; the next run goes on
                run.pool.stop()
    except Exception as e:  # (not cancellation or an interrupt: those stop the grader, not this report)
        _failed(report, run, e, asg.spec.policy)


async def _stages(report: Report, run: Run, submission: Submission, asg: Assignment,
                  first: StandbyKernel, standby: StandbyKernel | None) -> None:
    launcher, cell_timeout, total_timeout, seed = run.launcher, run.cell_timeout, run.total_timeout, report.seed
    chosen = asg.spec.checks if run.checks is None else run.checks
    # the expected values come from the pool, or (torch, the reference) load in a thread while
    # the kernel starts and runs the notebook: none of it enters the kernel
    planned = asyncio.ensure_future(_planned(asg, seed, chosen, run))
    planned.add_done_callback(_retrieved)
    run.stage = "preparing the working folder"
    # (its kernel started, no code run in it yet: the prelude enters the work folder)
    workspace = make_workspace(submission.path, [asg.path(f) for f in asg.spec.files], into=first.workspace,
                               folders=asg.spec.folders)
    modname = new_module_name()
    snapshots = Snapshots(submission.nb, asg.spec.checks)
    flags: list[Flag] = report.flags
    results: list[CheckResult] = report.checks
    budget = Budget(total_timeout)  # cells, probes and the re-run together
    try:
        run.stage = "running the notebook"
        try:
            session = await execute(
                submission.nb, workspace, first, prelude_source(modname), cell_timeout, total_timeout,
                after_cell=snapshots.hook(modname), budget=budget,
            )
        except RuntimeError as e:
            raise GraderError(f"could not start a Python kernel: {e}") from None
        run.session = session
        try:
            run.stage = "planning the checks"
            reference, plans = await planned
            run.stage = "checking the notebook's functions and variables"
            finals: dict[str, Answer] = {}  # variable checks: the value the notebook ends with
            unrun = unrun_definitions(submission.nb, session.record, raised=True)
            texts = _cell_texts(submission.nb)  # once: where a raised exception points to
            budget.hold(budget.final_reserve())  # the import check, last, always gets its second
            for p in plans:
                answers, status = await _probe(session, modname, p, flags, texts)
                if p.check.kind == "variable" and p.trials and f"{p.check.id}#{p.trials[0].index}" in answers:
                    finals[p.check.id] = answers[f"{p.check.id}#{p.trials[0].index}"]
                numerical = _numerical(answers)
                checked = judge(p, answers, status)
                if status == "ok" and p.check.kind == "function" and any(r.status != "pass" for r in checked):
                    # written for 1-D or row vectors? ask again with vectors shaped that way too
                    answers, status = await _probe(session, modname, p, flags, texts, alternates=True)
                    numerical = numerical or _numerical(answers)
                    if status == "ok":  # out of time for it: the first verdict stands
                        checked = judge(p, answers, status)
                if numerical:
                    _flag_numerical(p, checked, flags)
                names = [p.check.target, *p.check.aliases]
                results.extend(_not_run(r, names, unrun) for r in checked)
            run.stage = "checking gradients against the notebook's own forward pass"
            await check_consistency(session, modname, plans, results, reference, seed)
            run.stage = "locating wrong intermediate values"
            await localise(session, modname, plans, results)
            budget.release()
            run.stage = "checking imports"
            flags.extend(await forbidden_imports(session, modname, submission.nb, asg.spec.policy.forbidden_imports))
            if session.tampered and not any(f.code == "probe_tampered" for f in flags):
                flags.append(Flag("probe_tampered", "probes", "The notebook interfered with the grader's "
                                  "requests; their answers were not used."))
        finally:
            await session.finish()
    finally:
        if not planned.done():  # stopped before it needed its plan: no thread computes one for nothing
            planned.cancel()
        await first.discard()  # (its kernel is stopped: the workspace goes before the re-run)
    run.stage = "judging values an earlier cell gave"
    snapshots.rescue(plans, results, finals)  # before the re-run: a rescued value is re-run-tested too
    run.stage = "re-running the notebook on a fresh sample"
    await rerun_given(submission, asg, reference, plans, results, launcher, seed, cell_timeout, budget, standby,
                      session.record)
    run.stage = "scoring"
    if any("probe_tampered" in r.codes for r in results) and not any(f.code == "probe_tampered" for f in flags):
        flags.append(Flag("probe_tampered", "rerun", "The notebook interfered with the grader's re-run."))
    note_reassigned(submission.nb, plans, results)
    report.execution = _execution(session.record, launcher, cell_timeout, total_timeout, run.cell_timeout_source)
    report.score = total(results, flags, asg.spec.policy, report.max_score)


async def _planned(asg: Assignment, seed: int, checks: list[Check],
                   run: Run) -> tuple[ReferenceLike, list[CheckPlan]]:
    entry = await run.entries(seed) if run.entries is not None else None
    return await asyncio.to_thread(_plan, asg, seed, checks, run.pool, entry)


def _plan(asg: Assignment, seed: int, checks: list[Check], pool: Builder | None = None,
          given: Entry | None = None) -> tuple[ReferenceLike, list[CheckPlan]]:
    """The reference and the graded checks' inputs and expected values: from `given` or the pool's
    entry for `seed`, else computed live (importing torch), `pool` then filling the pool."""
    usable = given is not None and given.seed == seed and given.key == pool_key(asg)
    entry = given if usable else read_entry(asg, seed)
    if entry is not None:
        pooled = PooledReference(asg, entry, lambda: Reference(asg))
        return pooled, plan(asg, pooled, seed, checks)
    reference = Reference(asg)
    plans = plan(asg, reference, seed, checks)
    if pool is not None:
        pool.start()
    return reference, plans


def _retrieved(future: asyncio.Future[Any]) -> None:
    # a run that stopped before it needed its plan: its failure is not news (nor logged as lost)
    if not future.cancelled():
        future.exception()


def _failed(report: Report, run: Run, error: Exception, policy: Policy) -> None:
    """Turn a failure while grading into the report's error: one line for people, the traceback for maintainers."""
    report.status = "error"
    report.error_stage = run.stage
    what = f"{type(error).__name__}: {error}" if not isinstance(error, GraderError) else str(error)
    report.error = inert(f"the grader failed while {run.stage}: {what}", 500)
    report.error_traceback = inert_block("".join(traceback.format_exception(error)))
    if run.session is not None:
        report.execution = _execution(run.session.record, run.launcher, run.cell_timeout, run.total_timeout,
                                      run.cell_timeout_source)
    with contextlib.suppress(Exception):  # what was graded before the failure still counts
        report.score = total(report.checks, report.flags, policy, report.max_score)


async def _probe(
    session: Session, modname: str, p: CheckPlan, flags: list[Flag], texts: list[list[str]],
    alternates: bool = False,
) -> tuple[dict, str]:
    """Probe a check's trials (with `alternates`: also in the other vector conventions)."""
    if session.budget.exhausted:
        return {}, "budget"
    if not session.alive:
        return {}, "no_kernel"
    check = p.check
    items = probe_items(p, alternates)
    timeout = check.timeout * len(items) + 5
    reply = await send(session, probe_request(modname, items), timeout)
    if reply.status in ("died", "timeout", "budget"):  # died: the session has a fresh kernel for later checks, if it could make one
        return {}, reply.status
    if not reply.ok:
        flags.append(Flag("probe_tampered", check.target,
                          "The notebook interfered with the grader's probe; its answers were not used."))
        return {}, "ok"
    locate(reply.answers, texts)
    return reply.answers, "ok"


def _cell_texts(nb: NotebookNode) -> list[list[str]]:
    """Per cell, the texts it may have run as: its source, and the source as the kernel got it."""
    out = []
    for c in nb.cells:
        src = c.source if c.cell_type == "code" else ""
        tolerant = tolerant_imports(src) if src else src
        out.append([src] if tolerant == src else [src, tolerant])
    return out


def _numerical(answers: dict[str, Answer]) -> bool:
    return any(a.numerical for a in answers.values())


def _flag_numerical(p: CheckPlan, checked: list[CheckResult], flags: list[Flag]) -> None:
    """A gradient function that evaluates the notebook's forward pass or loss on weights moved one
    element at a time computes finite differences, not backpropagation."""
    name = p.check.target
    text = (f"{name} computes its gradients numerically: it evaluates the notebook's own functions with "
            "one weight moved at a time (finite differences). This assignment asks for backpropagation by hand.")
    for r in checked:
        r.diagnosis.append(Diagnosis("numerical_gradient", text))
    flags.append(Flag("numerical_gradient", name, text))


def _not_run(result: CheckResult, names: list[str], unrun: dict[str, tuple[CellRun, bool]]) -> CheckResult:
    """A check reported missing because the cell defining (or importing) its name never ran or
    raised says so: a course module that fails to import (Python 2 code) is not a naming problem."""
    found = next((unrun[n] for n in [*names, "*"] if n in unrun), None)
    if result.status != "missing" or found is None:
        return result
    run, imported = found
    if run.status == "error":  # not a naming problem: the cell stopped before defining it
        code = "exception"
        said = f"{run.ename}: {run.evalue}" if run.evalue.strip() else run.ename
        why = (f"the import in cell {run.index + 1} raised {said}" if imported
               else f"cell {run.index + 1}, which defines it, raised {said}")
    else:
        code = "timeout" if run.ename in ("Timeout", "TimeLimit") else "kernel_died"
        why = f"cell {run.index + 1}, which defines it, did not run to the end: {run.evalue}"
    result.status = "error"
    result.message = f"{result.target} could not be checked: {why}"
    result.diagnosis = [Diagnosis(code, f"{result.target} could not be checked: {why}.")]
    return result


def _execution(record: ExecutionRecord, launcher: KernelLauncher, cell_timeout: float = 0.0,
               total_timeout: float = 0.0, cell_timeout_source: str = "option") -> Execution:
    isolation = launcher.describe()
    limits = {"cell_timeout_s": cell_timeout, "cell_timeout_source": cell_timeout_source,
              "total_timeout_s": total_timeout,
              "output_per_cell_kb": MAX_CELL_OUTPUT_BYTES // 1024}
    for key in ("memory_mb", "processes", "file_size_mb", "open_files"):
        if key in isolation:
            limits[key] = isolation[key]
    return Execution(
        ran_cells=[c.index + 1 for c in record.cells if c.status in ("ok", "error")],
        timed_out_cells=[c.index + 1 for c in record.cells if c.status == "timeout"],
        total_timed_out=record.total_timed_out,
        limits=limits,
        limit_events=list(record.limit_events),
        cell_errors=[CellError(c.index + 1, c.ename, c.evalue) for c in record.errors],
        timed_out=record.timed_out,
        kernel_died=record.kernel_died,
        skipped_cells=sorted(
            {c.index + 1 for c in record.cells if c.status == "skipped"} | {i + 1 for i in record.fatal_cells}
        ),
        output_truncated=record.output_truncated,
        slowest_cell_s=round(max((c.duration_s for c in record.cells if c.status in ("ok", "error")), default=0.0), 3),
        restarts=record.restarts,
        duration_s=round(record.duration_s, 3),
        isolation=isolation,
    )
