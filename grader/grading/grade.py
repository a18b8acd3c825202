"""Grading one notebook, end to end: read it, resolve the assignment, start the first run's
kernel; then the stages (stages.py: execute, probe, judge, re-run, score) make the report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.assignment.load import find_assignment, find_known_assignment, known_assignments
from grader.assignment.model import Assignment
from grader.errors import UnknownAssignment
from grader.grading.limits import cell_limit
from grader.grading.selection import check_points, select_checks, selection_info
from grader.judging.hidden import hidden_view
from grader.judging.labels import label_results
from grader.kernels.ahead import empty_workspace
from grader.kernels.envs import KernelEnv, ensure_assignment_env
from grader.kernels.launch import KernelLauncher, LocalKernelLauncher
from grader.kernels.standby import StandbyKernel
from grader.kernels.tracking import cleanup_all, interrupted, interruptible
from grader.options import TOTAL_TIMEOUT
from grader.pool.child import Builder, Planner
from grader.pool.store import choose_seed
from grader.report import Report
from grader.submission.notebook import Submission, read_submission

if TYPE_CHECKING:
    from grader.grading.stages import EntrySource

# Only what comes before the first kernel starts is imported here: the stages (the probes,
# judging, the re-run, nbclient) are imported once it has started, and load while it boots.


def resolve_assignment(name: str | Assignment | None, submission: Submission) -> Assignment:
    """The assignment named (id or folder), else the one the notebook's metadata declares (by id only)."""
    if isinstance(name, Assignment):
        return name
    if name:
        return find_assignment(name)
    declared = submission.declared_assignment
    if declared:
        return find_known_assignment(declared)
    ids = ", ".join(sorted(known_assignments())) or "(none)"
    raise UnknownAssignment(
        f"{submission.path}: which assignment is this? Pass --assignment (known assignments: {ids})"
    )


def grade_notebook(
    path: str | Path,
    assignment: str | Assignment | None = None,
    *,
    seed: int | None = None,
    cell_timeout: float | None = None,
    total_timeout: float = TOTAL_TIMEOUT,
    launcher: KernelLauncher | None = None,
    checks: Sequence[str] | None = None,
    public_only: bool = False,
) -> Report:
    """Grade one notebook; raises GraderError if the notebook or the assignment is unusable.

    `checks` (ids, targets or labels) and `public_only` grade some checks only, faster.
    `cell_timeout` (seconds per cell) overrides the assignment's; without it a cell gets the
    spec's `[policy] cell_timeout`, else the limit measured from the solution, else CELL_TIMEOUT.
    """
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
                checks=checks,
                public_only=public_only,
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
    cell_timeout: float | None = None,
    total_timeout: float = TOTAL_TIMEOUT,
    launcher: KernelLauncher | None = None,
    checks: Sequence[str] | None = None,
    public_only: bool = False,
    entries: EntrySource | None = None,
    cell_timeout_source: str = "option",
) -> Report:
    """The async form of grade_notebook (for callers that already run an event loop).

    `entries(seed)` may give the run's pool entry computed elsewhere (a batch's planner).
    `cell_timeout_source` says where a given `cell_timeout` came from (a batch resolves it once).

    Raises GraderError only when the notebook or the assignment is unusable. Any failure
    after that (of the grader, on this submission) is a report with status "error", the
    stage that failed and what was graded before it.
    """
    started = time.monotonic()
    submission = read_submission(path)
    asg = resolve_assignment(assignment, submission)
    chosen = select_checks(asg, checks, public_only)
    # a run without a seed draws one from the assignment's pool, whose entries need no torch
    seed, fill_pool = choose_seed(asg) if seed is None else (int(seed), False)
    report = Report(
        assignment=assignment_info(asg),
        submission={"path": str(submission.path), "sha256": submission.sha256},
        seed=seed,
        max_score=sum(check_points(c) for c in chosen),
        selection=selection_info(asg, checks, public_only),
    )
    # Without a complete pool, this run's entry is computed in a child process from the start:
    # torch loads there, on another core, while this process starts the kernel and runs the
    # notebook (in a thread of this process it held the interpreter lock the kernel's driving
    # needs, and a first grade cost about 2.8x the floor). A child that cannot help: live here.
    planner = Planner(asg, [seed], window=1) if fill_pool and entries is None else None
    if planner is not None:
        await planner.start()
        entries = planner.entry
    try:
        # The kernel runs from the assignment's own environment (built the first time it is needed).
        env = await asyncio.to_thread(ensure_assignment_env, asg)
        report.environment = env.describe()
        launcher = bind_env(launcher or LocalKernelLauncher(), env)
        if cell_timeout is None:
            cell_timeout, cell_timeout_source = cell_limit(asg)
        # the first run's kernel starts now, in an empty workspace its stage fills before the
        # kernel runs anything; the stages are imported once its process is started
        first = StandbyKernel(launcher, empty_workspace(launcher))
        try:
            await first.started()
            from grader.grading.stages import Run, grade_stages

            run = Run(launcher, cell_timeout, total_timeout, checks=chosen, cell_timeout_source=cell_timeout_source,
                      pool=Builder(asg) if fill_pool else None, entries=entries)
            await grade_stages(report, run, submission, asg, first)
        finally:
            await first.discard()  # (where the stages did not get to it)
    finally:
        if planner is not None:
            await planner.close()
    label_results(report.checks, asg.spec.checks)
    # the one place every output's hidden results pass through: only grader-side facts stay
    report.checks = [hidden_view(c) for c in report.checks]
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def bind_env(launcher: KernelLauncher, env: KernelEnv) -> KernelLauncher:
    """The launcher starting kernels from `env` (a launcher without `with_env` chooses its own Python)."""
    with_env = getattr(launcher, "with_env", None)
    return with_env(env) if callable(with_env) else launcher


def assignment_info(asg: Assignment) -> dict[str, Any]:
    """The report's `assignment`: what was graded against, and from which folder."""
    return {"id": asg.id, "version": asg.spec.version, "spec_sha256": asg.spec_sha256, "folder": str(asg.folder)}
