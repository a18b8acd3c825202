"""Grading one notebook, end to end: read it, resolve the assignment, start the first run's
kernel; then the stages (stages.py: execute, probe, judge, re-run, score) make the report."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from grader.assignment.load import find_assignment, find_known_assignment, known_assignments
from grader.assignment.model import Assignment
from grader.errors import UnknownAssignment
from grader.grading.limits import cell_limit
from grader.grading.selection import select_checks
from grader.kernels.ahead import empty_workspace
from grader.kernels.envs import KernelEnv, ensure_assignment_env
from grader.kernels.launch import KernelLauncher, LocalKernelLauncher
from grader.kernels.standby import StandbyKernel
from grader.kernels.tracking import cleanup_all, interrupted, interruptible
from grader.options import TOTAL_TIMEOUT
from grader.submission.notebook import OpenedNotebook, open_notebook

if TYPE_CHECKING:
    from grader.grading.stages import EntrySource
    from grader.report import Report

# Only what comes before the first kernel starts is imported here: the stages (nbformat,
# numpy, the probes, judging, the re-run) are imported once it has started, and load while it boots.


def resolve_assignment(name: str | Assignment | None, submission: OpenedNotebook) -> Assignment:
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
    opened = open_notebook(path)  # its JSON: which assignment it is (nbformat validates it later)
    asg = resolve_assignment(assignment, opened)
    chosen = select_checks(asg, checks, public_only)
    # The kernel runs from the assignment's own environment (built the first time it is needed).
    env = await asyncio.to_thread(ensure_assignment_env, asg)
    launcher = bind_env(launcher or LocalKernelLauncher(), env)
    if cell_timeout is None:
        cell_timeout, cell_timeout_source = cell_limit(asg)
    # the first run's kernel starts now, in an empty workspace its stage fills before the
    # kernel runs anything; the rest (nbformat, numpy, the stages) is imported while it boots
    first = StandbyKernel(launcher, empty_workspace(launcher))
    second: StandbyKernel | None = None
    try:
        await first.started()
        # the re-run's kernel starts now too, at a lower priority: it boots on what the first
        # run's kernel and this process leave, and is ready when the re-run comes
        from grader.judging.rerun import rerun_kernel

        second = rerun_kernel(opened.path, asg, launcher)
        from grader.grading.stages import Run, grade_started

        run = Run(launcher, cell_timeout, total_timeout, checks=chosen, cell_timeout_source=cell_timeout_source,
                  entries=entries)
        report = await grade_started(opened, asg, run, first, second, seed, checks, public_only, env)
    finally:  # (where the stages did not get to them)
        await first.discard()
        if second is not None:
            await second.discard()
    report.duration_s = round(time.monotonic() - started, 3)
    return report


def bind_env(launcher: KernelLauncher, env: KernelEnv) -> KernelLauncher:
    """The launcher starting kernels from `env` (a launcher without `with_env` chooses its own Python)."""
    with_env = getattr(launcher, "with_env", None)
    return with_env(env) if callable(with_env) else launcher
