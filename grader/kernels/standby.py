"""A kernel started ahead of need, so that a run does not wait for one to start.

The first run's kernel is started as soon as the assignment and its environment are known,
in an empty workspace, before the grader loads the stages that follow (they load while the
kernel boots); the submission's files go into that workspace before the kernel runs anything.
The hard-coding re-run needs a second kernel after the first run is done. Starting a kernel
is most of what that costs, and it needs nothing of the first run: so the re-run's kernel is
started, in a workspace of its own, beside the first one, and waits there idle. No code of
the submission runs in either until a session takes it (and starting kernels is not charged
to the submission's time limit, so the budget is the same as without them).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from grader.kernels.launch import KernelLauncher
from grader.kernels.stop import stop_kernel
from grader.kernels.teardown import current
from grader.kernels.workspace import Workspace


class StandbyKernel:
    """A launcher whose first start, for its own workspace, hands over a kernel started earlier."""

    def __init__(self, launcher: KernelLauncher, workspace: Workspace):
        self.launcher = launcher
        self.workspace = workspace
        self._level = getattr(launcher, "level", None)  # the isolation level it was started at
        self._task: asyncio.Task[AsyncKernelManager] | None = asyncio.ensure_future(
            launcher.start(workspace))
        self._task.add_done_callback(_retrieved)
        self._discarded = False

    async def started(self) -> None:
        """Wait until the kernel is started (its process running, not yet ready), or failed to."""
        if self._task is not None:
            await asyncio.wait([self._task])

    async def start(self, workspace: Workspace) -> AsyncKernelManager:
        """The kernel started ahead, the first time; a fresh one from the launcher after that."""
        task, self._task = self._task, None
        if task is not None:
            if workspace is self.workspace and getattr(self.launcher, "level", None) == self._level:
                with contextlib.suppress(Exception):  # it could not be started: start one now
                    return await task
            else:  # the launcher chose another level since (a remembered one failed): not this one
                await stop_started(task)
        return await self.launcher.start(workspace)

    def describe(self) -> dict[str, object]:
        """What the underlying launcher guarantees."""
        return self.launcher.describe()

    def recheck(self) -> bool:
        """As the underlying launcher's (probe the isolation levels again after a failed start)."""
        recheck: Any = getattr(self.launcher, "recheck", None)
        return bool(recheck()) if recheck is not None else False

    async def discard(self) -> None:
        """Stop the kernel if no session took it, and remove the workspace; in the background
        where a teardown is in use (see teardown.py). Once: asked again, nothing more is done."""
        if self._discarded:
            return
        self._discarded = True
        task, self._task = self._task, None
        teardown = current()
        if teardown is None:
            await self._discard(task)
        elif task is None:  # a session took the kernel: it stopped it
            await teardown.remove(self.workspace)
        else:
            await teardown.later(lambda: self._discard(task))

    async def _discard(self, task: asyncio.Task[AsyncKernelManager] | None) -> None:
        try:
            if task is not None:
                await stop_started(task)
        finally:
            self.workspace.cleanup()


# The `nice` increment of a kernel started ahead of need (see Workspace.nice): while the first
# run's kernel boots and the grader loads, a busy machine gives it only what they leave.
AHEAD_NICE = 10

# A start is quick (the process is spawned); one that takes longer than this is hung, and is
# cancelled: a launcher stops whatever it had started when its start is cancelled.
START_GRACE_S = 5.0
CANCEL_GRACE_S = 60.0


async def stop_started(task: asyncio.Task[AsyncKernelManager]) -> None:
    """Stop the kernel `task` starts, once it has; cancel a start that hangs."""
    done, _ = await asyncio.wait([task], timeout=START_GRACE_S)
    if not done:
        task.cancel()
        # a cancelled start stops what it had started: on a busy machine that takes its time
        await asyncio.wait([task], timeout=CANCEL_GRACE_S)
        if not task.done():
            return  # a launcher that ignores cancellation: nothing more can be done from here
    if task.cancelled() or task.exception() is not None:
        return  # the launcher already stopped what it had started
    await stop_kernel(task.result())


def _retrieved(task: asyncio.Task[Any]) -> None:
    # a kernel no one asked for in the end: its failure to start is not news
    if not task.cancelled():
        task.exception()
