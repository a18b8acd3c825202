"""Stopping a graded submission's kernels and removing its workspaces in the background.

Once a submission's results are known, stopping its kernel and removing its folders changes
nothing in its report, yet takes a noticeable part of grading it. Where a `Teardown` is in use
(a batch, see `in_background`), that work is handed to it and runs while the next submission
is graded; elsewhere it is done at once, as before. A teardown ends only when all of it is
done (`drain`), so nothing outlives the batch; an interrupt still cleans up everything (every
kernel, user, cgroup and folder stays registered until it is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar

from jupyter_client.manager import AsyncKernelManager

from grader.kernels.stop import stop_kernel
from grader.kernels.workspace import Workspace

# At most this many teardowns wait or run at once; one more waits for room (the grader's memory
# and the machine's processes stay bounded however fast submissions come).
MAX_PENDING = 4

_current: ContextVar[Teardown | None] = ContextVar("grader_teardown", default=None)


class Teardown:
    """Background stops of kernels and removals of workspaces, a bounded number at a time."""

    def __init__(self, limit: int = MAX_PENDING):
        self._room = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stops: dict[int, list[asyncio.Task[None]]] = {}  # id(workspace) -> its kernels' stops
        self._removed: weakref.WeakValueDictionary[int, Workspace] = weakref.WeakValueDictionary()

    async def later(self, work: Callable[[], Awaitable[None]],
                    after: list[asyncio.Task[None]] | None = None) -> asyncio.Task[None]:
        """Run `work()` in the background (after the tasks `after`); waits only for room."""
        await self._room.acquire()  # (waits while MAX_PENDING are in hand)

        async def run() -> None:
            try:
                if after:
                    await asyncio.wait(after)
                await work()
            finally:
                self._room.release()

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # (a failed stop is the interrupt handler's to clean up; not news)

    async def stop_kernel(self, km: AsyncKernelManager, workspace: Workspace) -> None:
        """Stop `km` (a kernel of `workspace`) in the background."""
        task = await self.later(lambda: stop_kernel(km))
        self._stops.setdefault(id(workspace), []).append(task)

    async def remove(self, workspace: Workspace) -> None:
        """Remove `workspace` in the background, once its kernels handed over here are stopped
        (once: asked again, nothing more is done)."""
        if self._removed.get(id(workspace)) is workspace:
            return
        self._removed[id(workspace)] = workspace
        stops = self._stops.pop(id(workspace), [])

        async def cleanup() -> None:
            await asyncio.to_thread(workspace.cleanup)  # (blocking: kills by user, removes folders)

        await self.later(cleanup, stops)

    async def drain(self) -> None:
        """Wait until everything handed over is done."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))


def current() -> Teardown | None:
    """The teardown in use here, if any."""
    return _current.get()


@contextlib.asynccontextmanager
async def in_background() -> AsyncIterator[Teardown]:
    """Within this block (and the tasks it starts), kernels and workspaces are torn down in the
    background; leaving it waits until all of that is done."""
    teardown = Teardown()
    token = _current.set(teardown)
    try:
        yield teardown
    finally:
        _current.reset(token)
    # (not after an interrupt: the grader's exit then kills and removes whatever is left)
    await teardown.drain()


async def remove_workspace(workspace: Workspace) -> None:
    """Remove a workspace whose kernels are stopped (or handed to the teardown): in the
    background where a teardown is in use, else now."""
    teardown = current()
    if teardown is None:
        workspace.cleanup()
    else:
        await teardown.remove(workspace)
