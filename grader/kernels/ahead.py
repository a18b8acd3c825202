"""Kernels started before the submission they will run is known, so that no submission waits for one.

In a batch, while one submission is graded, the next one's kernel is already started: in a
fresh, empty workspace of its own (its own folder, user and cgroup, as every kernel gets),
forked from the warm parent, with no code of any submission in it. When the next submission
comes, its files are copied into that workspace (and given to the kernel's user) before the
kernel runs anything: the grader's prelude, which enters the work folder, comes first, as
with a kernel started on demand. Each kernel still serves exactly one submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from grader.kernels.standby import stop_started
from grader.kernels.workspace import Workspace, new_workspace


class KernelsAhead:
    """Up to `count` empty workspaces, each with a kernel started (or starting) in it."""

    def __init__(self, start: Callable[[Workspace], Awaitable[AsyncKernelManager]], count: int):
        self._start = start
        self.count = count
        self._ready: list[tuple[Workspace, asyncio.Task[AsyncKernelManager]]] = []
        self._handed: dict[int, asyncio.Task[AsyncKernelManager]] = {}  # id(workspace) -> its start
        self.closed = False

    def fill(self) -> None:
        """Start kernels until `count` are ready or starting (call from a running event loop)."""
        while not self.closed and len(self._ready) < self.count:
            ws = new_workspace()
            task = asyncio.ensure_future(self._start(ws))
            task.add_done_callback(_retrieved)
            self._ready.append((ws, task))

    def take(self) -> Workspace | None:
        """A workspace whose kernel was started ahead (None if none is), and the next one started."""
        ws = None
        if self._ready and not self.closed:
            ws, task = self._ready.pop(0)
            self._handed[id(ws)] = task
        self.fill()
        return ws

    def started(self, workspace: Workspace) -> asyncio.Task[AsyncKernelManager] | None:
        """The start of the kernel made ahead for `workspace` (once), if it was one of ours."""
        return self._handed.pop(id(workspace), None)

    async def close(self) -> None:
        """Stop the kernels no submission took, and remove their workspaces."""
        self.closed = True
        ready, self._ready = self._ready, []
        handed, self._handed = list(self._handed.values()), {}
        for ws, task in ready:
            try:
                await stop_started(task)
            finally:
                await asyncio.to_thread(ws.cleanup)
        for task in handed:  # taken, but its submission stopped before starting it
            await stop_started(task)


def empty_workspace(launcher: Any) -> Workspace:
    """The submission's workspace, still empty (its files go in with `make_workspace(into=...)`):
    one whose kernel the launcher started ahead, where it has one, else a new one."""
    take = getattr(launcher, "take_workspace", None)
    return (take() if callable(take) else None) or new_workspace()


def _retrieved(task: asyncio.Task[Any]) -> None:
    # a kernel started ahead that failed: the submission that takes it starts one as usual
    if not task.cancelled():
        task.exception()
