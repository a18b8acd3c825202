"""Grading one notebook, end to end: read, plan, execute, probe, judge, score, report."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

from .budget import Budget
from .consistency import check_consistency
from .errors import GraderError, UnknownAssignment
from .execute import (
    MAX_CELL_OUTPUT_BYTES,
    CellRun,
    ExecutionRecord,
    Session,
    execute,
    unrun_definitions,
)
from .expected import Reference
from .imports import forbidden_imports
from .judge import judge
from .kernel import (
    KernelLauncher,
    LocalKernelLauncher,
    cleanup_all,
    interrupted,
    interruptible,
    make_workspace,
)
from .localise import localise
from .notebook import Submission, read_submission
from .plan import CheckPlan, plan
from .probe import (
    Answer,
    ProbeItem,
    new_module_name,
    new_nonce,
    prelude_source,
    read_answers,
    request_source,
)
from .report import CellError, CheckResult, Diagnosis, Execution, Flag, Report
from .rerun import note_reassigned, rerun_given
from .score import total
from .snapshots import Snapshots
from .spec import Assignment, find_assignment, known_assignments


def resolve_assignment(name: str | Assignment | None, submission: Submission) -> Assignment:
    """The assignment named (id or folder), else the one the notebook's metadata declares."""
    if isinstance(name, Assignment):
        return name
    if name:
        return find_assignment(name)
    declared = submission.declared_assignment
    if declared:
        return find_assignment(declared)
    ids = ", ".join(sorted(known_assignments())) or "(none)"
    raise UnknownAssignment(
        f"{submission.path}: which assignment is this? Pass --assignment (known assignments: {ids})"
    )


def grade_notebook(
    path: str | Path,
    assignment: str | Assignment | None = None,
    *,
    seed: int | None = None,
    cell_timeout: float = 30.0,
    total_timeout: float = 300.0,
    launcher: KernelLauncher | None = None,
) -> Report:
    """Grade one notebook; raises GraderError if the notebook or the assignment is unusable."""
    async def run() -> Report:
        task = asyncio.current_task()
        with interruptible(task):  # Ctrl-C and SIGTERM stop the kernel and remove the temp folder
            return await grade_notebook_async(
                path,
                assignment,
                seed=seed,
                cell_timeout=cell_timeout,
                total_timeout=total_timeout,
                launcher=launcher,
            )

    try:
        return asyncio.run(run())
    except asyncio.CancelledError:
        if interrupted():  # (other cancellations are the caller's business: its runs stay)
            cleanup_all()
            raise KeyboardInterrupt from None
        raise
    except (KeyboardInterrupt, SystemExit):  # interrupted: nothing of this run may outlive it
        cleanup_all()
        raise


async def grade_notebook_async(
    path: str | Path,
    assignment: str | Assignment | None = None,
    *,
    seed: int | None = None,
    cell_timeout: float = 30.0,
    total_timeout: float = 300.0,
    launcher: KernelLauncher | None = None,
) -> Report:
    """The async form of grade_notebook (for callers that already run an event loop)."""
    started = time.monotonic()
    submission = read_submission(path)
    asg = resolve_assignment(assignment, submission)
    reference = Reference(asg)
    seed = secrets.randbits(32) if seed is None else int(seed)
    plans = plan(asg, reference, seed)
    launcher = launcher or LocalKernelLauncher()
    cell_timeout = asg.spec.policy.cell_timeout or cell_timeout
    workspace = make_workspace(submission.path, [asg.path(f) for f in asg.spec.files])
    modname = new_module_name()
    snapshots = Snapshots(submission.nb, plans)
    flags: list[Flag] = []
    budget = Budget(total_timeout)  # cells, probes and the re-run together
    try:
        try:
            session = await execute(
                submission.nb, workspace, launcher, prelude_source(modname), cell_timeout, total_timeout,
                after_cell=snapshots.hook(modname), budget=budget,
            )
        except RuntimeError as e:
            raise GraderError(f"could not start a Python kernel: {e}") from None
        try:
            results: list[CheckResult] = []
            finals: dict[str, Answer] = {}  # variable checks: the value the notebook ends with
            unrun = unrun_definitions(submission.nb, session.record)
            budget.hold(budget.final_reserve())  # the import check, last, always gets its second
            for p in plans:
                answers, status = await _probe(session, modname, p, flags)
                checked = judge(p, answers, status)
                if p.check.kind == "variable" and p.trials and f"{p.check.id}#{p.trials[0].index}" in answers:
                    finals[p.check.id] = answers[f"{p.check.id}#{p.trials[0].index}"]
                if status == "ok" and p.check.kind == "function" and any(r.status != "pass" for r in checked):
                    # written for 1-D or row vectors? ask again with vectors shaped that way too
                    answers, status = await _probe(session, modname, p, flags, alternates=True)
                    if status == "ok":  # out of time for it: the first verdict stands
                        checked = judge(p, answers, status)
                names = [p.check.target, *p.check.aliases]
                results.extend(_not_run(r, names, unrun) for r in checked)
            await check_consistency(session, modname, plans, results, reference, seed)
            await localise(session, modname, plans, results)
            budget.release()
            flags.extend(await forbidden_imports(session, modname, submission.nb, asg.spec.policy.forbidden_imports))
        finally:
            await session.close()
    finally:
        workspace.cleanup()
    snapshots.rescue(plans, results, finals)  # before the re-run: a rescued value is re-run-tested too
    await rerun_given(submission, asg, reference, plans, results, launcher, seed, cell_timeout, budget)
    note_reassigned(submission.nb, plans, results)
    report = Report(
        assignment={"id": asg.id, "version": asg.spec.version, "spec_sha256": asg.spec_sha256},
        submission={"path": str(submission.path), "sha256": submission.sha256},
        seed=seed,
        max_score=asg.max_score,
        execution=_execution(session.record, launcher, cell_timeout, total_timeout),
        checks=results,
        flags=flags,
    )
    report.score = total(results, flags, asg.spec.policy, asg.max_score)
    report.duration_s = round(time.monotonic() - started, 3)
    return report


async def _probe(
    session: Session, modname: str, p: CheckPlan, flags: list[Flag], alternates: bool = False
) -> tuple[dict, str]:
    """Probe a check's trials (with `alternates`: also in the other vector conventions)."""
    if session.budget.exhausted:
        return {}, "budget"
    if not session.alive:
        return {}, "no_kernel"
    check = p.check
    kind = {"variable": "variable", "behaviour": "pipeline"}.get(check.kind, "function")
    items = [
        ProbeItem(
            id=f"{check.id}#{t.index}",
            kind=kind,
            names=[check.target, *check.aliases],
            args=t.args if check.kind != "variable" else [],
            argnames=check.args,
            then_names=[check.then, *check.then_aliases] if check.then else [],
            then_args=t.then_args,
            alternates=alternates,
        )
        for t in p.trials
    ]
    for which, side in (("given", p.given), ("extreme", p.extreme)):  # unscored: diagnosis only
        if side is not None:
            items.append(ProbeItem(f"{check.id}#{which}", "function", [check.target, *check.aliases], side.args, check.args))
    if p.extreme is not None:  # the same extreme inputs, with numpy overflow raising
        items.append(ProbeItem(f"{check.id}#extreme_fp", "function", [check.target, *check.aliases],
                               p.extreme.args, check.args, fp_raise=True))
    nonce = new_nonce()
    timeout = check.timeout * len(items) + 5
    status, outputs = await session.run_code(request_source(modname, nonce, items), timeout)
    if status == "died":  # the session has a fresh kernel for later checks, if it could make one
        return {}, "died"
    if status in ("timeout", "budget"):
        return {}, status
    answers, claims = read_answers(outputs, nonce)
    if claims > 1 or (status == "ok" and not answers):
        flags.append(Flag("probe_tampered", check.target,
                          "The notebook interfered with the grader's probe; its answers were not used."))
        return {}, "ok"
    return answers, status


def _not_run(result: CheckResult, names: list[str], unrun: dict[str, CellRun]) -> CheckResult:
    """A check reported missing because the cell defining its name never ran says so."""
    run = next((unrun[n] for n in names if n in unrun), None)
    if result.status != "missing" or run is None:
        return result
    code = "timeout" if run.ename in ("Timeout", "TimeLimit") else "kernel_died"
    why = f"cell {run.index + 1}, which defines it, did not run to the end: {run.evalue}"
    result.status = "error"
    result.message = f"{result.target} could not be checked: {why}"
    result.diagnosis = [Diagnosis(code, f"{result.target} could not be checked: {why}.")]
    return result


def _execution(record: ExecutionRecord, launcher: KernelLauncher, cell_timeout: float = 0.0,
               total_timeout: float = 0.0) -> Execution:
    isolation = launcher.describe()
    limits = {"cell_timeout_s": cell_timeout, "total_timeout_s": total_timeout,
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
        restarts=record.restarts,
        duration_s=round(record.duration_s, 3),
        isolation=isolation,
    )
