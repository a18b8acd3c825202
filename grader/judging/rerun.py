"""Hard-coding check for notebook variables: re-run the notebook on a fresh sample.

The notebook runs again in a fresh kernel, its cells in place but each made to replace the
given sample (`x0`, `W1`, ...) by freshly drawn values wherever the notebook binds it: after
every statement that may bind one of those names (in loops, ifs, withs, tuple unpacking,
walrus, exec, globals(), setup functions declaring them global) and after every cell.
Variables the notebook computes follow; numbers typed or printed in do not. A variable that
was right on the given sample and, in the re-run, is missing, not numbers of its size, or
does not follow the fresh sample is flagged `hardcoded`.

Here: the re-run itself (`rerun_given`), its kernel started ahead (`rerun_kernel`), whether one
can follow (`rerun_possible`), the cells it leaves out. The fresh sample's refresh and the cells instrumented to call it are in
rerun_sample.py (the refresh's kernel-side code in rerun_kernel.py); judging the values the
re-run read, in rerun_judge.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grader.assignment.model import Assignment
from grader.assignment.reference import ReferenceLike
from grader.judging.consistency import ask
from grader.judging.rerun_judge import judge_rerun, own_function_items, rerun_samples
from grader.judging.rerun_sample import (
    assigning_cells,
    refresh_call,
    refresh_prelude,
    with_fresh_sample,
)
from grader.kernels.launch import KernelLauncher
from grader.kernels.standby import AHEAD_NICE, StandbyKernel
from grader.kernels.teardown import remove_workspace
from grader.kernels.workspace import make_workspace
from grader.plan.checks import CheckPlan
from grader.plan.items import ProbeItem
from grader.report import CheckResult, Diagnosis
from grader.run.budget import Budget
from grader.run.execute import execute
from grader.run.probe import Answer, new_module_name, prelude_source
from grader.run.record import NOT_RUN, ExecutionRecord
from grader.run.session import Session
from grader.submission.notebook import Submission

READ_TIMEOUT = 5.0  # seconds to read the watched variables of the re-run


async def rerun_given(
    submission: Submission,
    asg: Assignment,
    reference: ReferenceLike,
    plans: list[CheckPlan],
    results: list[CheckResult],
    launcher: KernelLauncher,
    seed: int,
    cell_timeout: float,
    budget: Budget,
    standby: StandbyKernel | None = None,
    first_run: ExecutionRecord | None = None,
) -> None:
    """Flag given-sample variables that were right but do not follow a fresh sample.

    The re-run draws on what is left of the submission's time budget. A value graded after an
    earlier cell (a rescued one) is read after that same cell of the re-run. With `standby`
    (see `rerun_kernel`), it runs in that kernel, started earlier, and its workspace. Cells
    that `first_run` (the first run's record) says met a limit are not run again.
    """
    spec = asg.spec
    if spec.rerun is None:
        return
    by_id = {r.id: r for r in results}
    watched = [
        p for p in plans
        if p.check.kind == "variable" and p.check.inputs == spec.rerun.inputs
        and all(by_id.get(t.id) is not None and by_id[t.id].status == "pass" for t in p.targets)
    ]
    if not watched:
        return
    given, fresh, values = rerun_samples(asg, reference, seed)
    try:
        answers, why, tampered = await _rerun(submission, asg, plans, watched, by_id, launcher, cell_timeout,
                                              budget, {n: given[n] for n in values}, values, standby,
                                              not_again(first_run))
    except RuntimeError:
        return  # no kernel could be started at all: the grader's failure, nothing to conclude
    if tampered:  # what the re-run computed is unknown: the given values earn nothing
        for p in watched:
            for target in p.targets:
                r = by_id[target.id]
                r.status, r.points = "fail", 0.0
                r.message = "The notebook interfered with the grader's re-run; this value was not accepted."
                r.diagnosis.insert(0, Diagnosis("probe_tampered", r.message))
        return
    for p in watched:
        for target in p.targets:
            judge_rerun(asg, reference, plans, p, target, by_id[target.id], answers, why, values, fresh)


async def _rerun(
    submission: Submission, asg: Assignment, plans: list[CheckPlan], watched: list[CheckPlan],
    by_id: dict[str, CheckResult],
    launcher: KernelLauncher, cell_timeout: float, budget: Budget, given: dict[str, Any], fresh: dict[str, Any],
    standby: StandbyKernel | None = None,
    skip: dict[int, str] | None = None,
) -> tuple[dict[str, Answer], str, bool]:
    """Run the notebook again with the fresh sample; the watched variables' values (each read after
    the cell its first-run value was graded after), why some may be missing ("" if no reason), and
    whether the notebook tampered with the grader's requests there.

    Answers `own:<check id>` and `own-given:<check id>` hold what the notebook's own function
    for the same computation returns on the fresh and on the given sample, at the end of the re-run.
    """
    if budget.exhausted:
        return {}, "the submission's time limit ran out before it could be re-run", False
    refresher, modname = new_module_name(), new_module_name()
    nb = with_fresh_sample(submission.nb, list(fresh), refresh_call(refresher))
    prelude = prelude_source(modname) + "\n" + refresh_prelude(refresher, given, fresh)
    final: list[ProbeItem] = []
    own: list[ProbeItem] = []  # asked apart: a function that hangs must not cost the variables' values
    after: dict[int, list[ProbeItem]] = {}
    for p in watched:
        item = ProbeItem(p.check.id, "variable", [p.check.target, *p.check.aliases])
        cell = by_id[p.targets[0].id].detail.get("graded_after_cell")
        if isinstance(cell, int):
            after.setdefault(cell - 1, []).append(item)
        else:
            final.append(item)
        own.extend(own_function_items(plans, p, fresh, given))
    answers: dict[str, Answer] = {}

    async def after_cell(session: Session, index: int) -> None:
        if index in after:
            answers.update(await ask(session, modname, after[index], READ_TIMEOUT) or {})

    if standby is not None:
        workspace, launcher = standby.workspace, standby
    else:
        workspace = make_workspace(submission.path, [asg.path(f) for f in asg.spec.files],
                                   folders=asg.spec.folders)
    try:
        session = await execute(nb, workspace, launcher, prelude, cell_timeout, after_cell=after_cell,
                                budget=budget, cell_reserve=budget.final_reserve(), skip=skip)
        try:
            for items in (final, own):
                if items:
                    answers.update(await ask(session, modname, items, READ_TIMEOUT) or {})
            why = _why_missing(session.record, budget)
            tampered = bool(session.tampered)
        finally:
            await session.finish()
    finally:
        await remove_workspace(workspace)
    return answers, why, tampered


def rerun_kernel(notebook: Path, asg: Assignment, launcher: KernelLauncher) -> StandbyKernel | None:
    """The re-run's kernel for the notebook at `notebook`, started now (call from a running event
    loop) at a lower CPU priority (AHEAD_NICE), in a workspace of its own; None when the assignment
    has no re-run. It may start before the notebook is validated: discard it when
    `rerun_possible` then says no re-run can follow."""
    spec = asg.spec
    if spec.rerun is None:
        return None
    workspace = make_workspace(notebook, [asg.path(f) for f in spec.files], folders=spec.folders)
    workspace.nice = AHEAD_NICE
    return StandbyKernel(launcher, workspace)


def rerun_possible(submission: Submission, asg: Assignment) -> bool:
    """Whether a re-run can follow: the assignment has one, and the notebook assigns one of the
    variables it would read."""
    spec = asg.spec
    if spec.rerun is None:
        return False
    names = [n for c in spec.checks if c.kind == "variable" and c.inputs == spec.rerun.inputs
             for n in (c.target, *c.aliases)]
    return any(assigning_cells(submission.nb, n) for n in names)


def not_again(first_run: ExecutionRecord | None) -> dict[int, str]:
    """The cells the re-run leaves out (index -> why): those that in the first run met a limit
    (the cell time limit, the memory or process limit, a kernel that died or stopped answering)
    or did not run at all. Run again, they would only meet it again and cost the same time; a
    value only such a cell assigns is then one the re-run cannot verify, as when it times out."""
    if first_run is None:
        return {}
    why = {"timeout": "it ran out of time in the first run", "died": "it stopped the kernel in the first run",
           "skipped": "it did not run in the first run"}
    return {run.index: why[run.status] for run in first_run.cells if run.status in why}


def _why_missing(record: ExecutionRecord, budget: Budget) -> str:
    """What in the re-run may have kept a variable from being computed, in words ("" if nothing)."""
    if record.total_timed_out or budget.exhausted:
        return "the submission's time limit ran out during the re-run"
    for run in record.cells:
        if run.status == "error":
            return f"cell {run.index + 1} raised {run.ename} in the re-run"
        if run.status == "skipped" and run.ename == NOT_RUN:
            return f"cell {run.index + 1} was not run in the re-run: {run.evalue}"
        if run.status in ("timeout", "died", "skipped"):
            return f"cell {run.index + 1} did not run to the end in the re-run ({run.evalue})"
    return ""
