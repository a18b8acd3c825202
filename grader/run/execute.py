"""Executing a submission: every code cell in a fresh kernel, errors recorded, never fatal.

`execute` starts a session (grader/run/session.py) and runs the notebook's cells in it; the
session stays live for the probes that follow. What happened to each cell is in its record
(grader/run/record.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nbformat import NotebookNode

from grader.kernels.launch import KernelLauncher
from grader.kernels.workspace import Workspace
from grader.run.budget import Budget
from grader.run.session import Session


async def execute(
    nb: NotebookNode,
    workspace: Workspace,
    launcher: KernelLauncher,
    prelude: str,
    cell_timeout: float = 30.0,
    total_timeout: float = 300.0,
    after_cell: Callable[[Session, int], Awaitable[None]] | None = None,
    budget: Budget | None = None,
    cell_reserve: float | None = None,
    skip: dict[int, str] | None = None,
) -> Session:
    """Run a notebook; the returned session is still live for probing (close it).

    The cells and everything later run in the session share `budget` (by default a fresh one
    of `total_timeout` seconds); the cells leave `cell_reserve` seconds of it (by default the
    budget's probe share) for the probing that follows them. Cells in `skip` (index -> why)
    are not run, and are recorded as skipped with that reason.
    """
    budget = budget or Budget(total_timeout)
    session = Session(launcher, workspace, nb, budget)
    session.after_cell = after_cell
    session.skip = dict(skip or {})
    reserve = budget.probe_share() if cell_reserve is None else cell_reserve
    try:
        await session.run_notebook(prelude, cell_timeout, reserve)
    except BaseException:
        await session.close()
        raise
    return session
