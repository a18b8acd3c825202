"""A session: a live kernel that runs the notebook's cells, then the grader's code (probes).

A cell that raises is recorded and execution continues. A cell that exceeds its time is
interrupted; if the kernel does not come back, it is replaced. A cell that kills the kernel
(os._exit, a segfault, a memory limit) is recorded, and the notebook is run again in a fresh
kernel without it, so that what was defined before is still graded. Grader code that kills or
hangs the kernel gets a fresh kernel that ran the notebook again (a revival), or none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from grader.errors import GraderError
from grader.kernels.cgroups import Cgroup
from grader.kernels.launch import KernelLauncher
from grader.kernels.stop import exit_cause, stop_kernel
from grader.kernels.tracking import check_interrupted
from grader.kernels.workspace import Workspace
from grader.run.budget import Budget
from grader.run.client import (
    MAX_CELL_OUTPUT_BYTES,
    MAX_PROBE_OUTPUT_BYTES,
    BoundedClient,
    client_for,
    wait_ready,
)
from grader.run.record import NOT_RUN, CellRun, ExecutionRecord, last_ran
from grader.run.runner import enter_workdir_source
from grader.run.tolerant import tolerant_imports

MAX_RESTARTS = 4
MAX_REVIVALS = 2  # fresh kernels for probes, after grader code killed one
RECOVERY_TIMEOUT = 5.0  # seconds an interrupted kernel gets to become idle again
READY_TIMEOUT = 60.0  # seconds a started kernel gets to answer


def _rechecked(launcher: KernelLauncher) -> bool:
    """Whether the launcher chose its level again after a failed start (see LocalKernelLauncher.recheck)."""
    recheck = getattr(launcher, "recheck", None)
    if recheck is None:
        return False
    try:
        return bool(recheck())
    except GraderError:  # no level works any more: the start's own failure is reported
        return False


class Session:
    """A live kernel that has run a notebook and can run more code (probes)."""

    def __init__(self, launcher: KernelLauncher, workspace: Workspace, nb: NotebookNode,
                 budget: Budget | None = None):
        self.launcher = launcher
        self.budget = budget or Budget(300.0)
        self.workspace = workspace
        self.nb = nb
        self.km: AsyncKernelManager | None = None
        self.client: BoundedClient | None = None
        self.record = ExecutionRecord()
        self._fatal_runs: dict[int, CellRun] = {}  # cells that killed a kernel, as recorded then
        self._run_args: tuple[str, float] | None = None  # prelude and cell time limit of the notebook run
        self.revivals = 0
        # Called after each student cell that ran (e.g. to keep values a later cell overwrites).
        self.after_cell: Callable[[Session, int], Awaitable[None]] | None = None
        self.broken = ""  # why the kernel became unusable while still running, if it did
        self.tampered: list[str] = []  # nonces of grader requests that did not run as sent
        self.kernels_started = 0
        self.skip: dict[int, str] = {}  # cells not to run at all (index -> why), recorded as skipped

    async def _start(self, prelude: str) -> None:
        check_interrupted()
        self.km = await self.launcher.start(self.workspace)
        self.client = client_for(self.nb, self.km)
        kc = self.client.kc  # held by the client already: close() stops its channels if the kernel never answers
        kc.start_channels()
        kc.allow_stdin = False  # input() raises at once instead of waiting for a reply no one sends
        await wait_ready(kc, self.km, READY_TIMEOUT)
        # the runner is installed before the work folder joins sys.path: nothing beside the
        # notebook can stand in for a module it loads
        prelude = prelude + "\n" + enter_workdir_source(str(self.workspace.work))
        # preparing the kernel is the grader's time, not the submission's: not charged
        cell = NotebookNode(cell_type="code", source=prelude, metadata={}, outputs=[], execution_count=None)
        status, _ = await self._run(cell, -1, 30, MAX_CELL_OUTPUT_BYTES)
        if status != "ok":
            raise RuntimeError(f"the grader could not prepare the kernel ({status})")

    async def _start_or_record(self, prelude: str, code_cells: list[int]) -> bool:
        """Start a kernel; whether one is ready.

        The session's first kernel starts before any of the notebook's code ran: if it cannot be
        made, that is the grader's failure (RuntimeError). Any later kernel (after a cell or a
        probe stopped one) starts after the notebook's code had its chance to influence it: its
        failure is the notebook's, recorded as the remaining cells not running, with no kernel left.
        """
        first = self.kernels_started == 0
        try:
            await self._start(prelude)
        except asyncio.CancelledError:
            await self.close()
            raise
        except Exception as e:
            await self.close()
            if first and _rechecked(self.launcher):  # a remembered isolation level that no longer works
                return await self._start_or_record(prelude, code_cells)
            if first:
                raise RuntimeError(str(e) or type(e).__name__) from None
            why = ("not run: no fresh kernel could be prepared after the notebook's code stopped the "
                   f"previous one ({str(e)[:200] or type(e).__name__})")
            self.record.event("a fresh kernel could not be prepared after the notebook's code stopped the previous one")
            done = {c.index for c in self.record.cells}  # what the kernel before this one ran
            self.record.cells += [CellRun(i, "skipped", "KernelDied", why) for i in code_cells if i not in done]
            return False
        self.kernels_started += 1
        return True

    async def finish(self) -> None:
        """Stop the kernel for good (no more runs): in the background where a teardown is in use
        (see teardown.py), else now, as `close`."""
        from grader.kernels.teardown import current

        teardown = current()
        if teardown is None or self.km is None:
            await self.close()
            return
        self._note_limits()  # (now: the report needs them)
        if self.client is not None and self.client.kc is not None:
            try:
                self.client.kc.stop_channels()
            except Exception:
                pass
        km, self.km, self.client = self.km, None, None
        await teardown.stop_kernel(km, self.workspace)

    async def close(self) -> None:
        """Stop the kernel and its children."""
        self._note_limits()
        if self.client is not None and self.client.kc is not None:
            try:
                self.client.kc.stop_channels()
            except Exception:
                pass
        if self.km is not None:
            await stop_kernel(self.km)
        self.km = None
        self.client = None

    def _note_limits(self) -> None:
        cgroup = getattr(self.km, "grader_cgroup", None)
        if isinstance(cgroup, Cgroup):
            if cgroup.hit_process_limit():
                self.record.event("process limit: the kernel tried to start more processes than allowed")
            if cgroup.oom_kills():
                self.record.event("memory limit: a process of the kernel was killed for using too much memory")
            elif cgroup.hit_memory_limit():
                self.record.event("memory limit: the kernel reached its memory limit")

    async def run_code(
        self, source: str, timeout: float, output_limit: int = MAX_PROBE_OUTPUT_BYTES
    ) -> tuple[str, list[dict[str, Any]]]:
        """Run code that is not a student cell; (status, outputs). Status: ok|error|timeout|budget|died.

        Its time counts against the submission's budget: `budget` when none is left, or when
        the budget (not `timeout`) stopped it. Code that runs out of time and ignores the
        interrupt gets `timeout`. When such code (or code that kills the kernel, `died`)
        leaves the kernel unusable, the session starts a fresh kernel and runs the notebook
        again, so later probes still have one; if that is not possible, the session is no
        longer `alive`.
        """
        if not self.alive:
            return "died", []
        left = self.budget.left()
        if left <= 0:
            self.record.event("time limit: the submission's time ran out before the grader had checked everything")
            return "budget", []
        cell = NotebookNode(cell_type="code", source=source, metadata={}, outputs=[], execution_count=None)
        with self.budget.running():
            status, outputs = await self._run(cell, -1, min(timeout, left), output_limit)
        by_budget = left < timeout and status in ("timeout", "hung")
        if by_budget:
            self.record.event("time limit: the submission's time ran out before the grader had checked everything")
        if status == "hung":  # it would stay busy forever
            self.record.event("time limit: grader code calling the notebook ran out of time and ignored the interrupt")
            await self._revive()
            return "budget" if by_budget else "timeout", outputs
        if by_budget:
            return "budget", outputs
        if status == "died":
            cause = exit_cause(self.km)
            self.record.event("the kernel stopped while the notebook's code was being checked"
                              + (f": {cause}" if cause else ""))
            await self._revive()
        return status, outputs

    async def _revive(self) -> None:
        """A fresh kernel that has run the notebook again (same skipped cells), or none."""
        await self.close()
        if self._run_args is None or self.revivals >= MAX_REVIVALS:
            return
        prelude, cell_timeout = self._run_args
        if self.budget.left() < 1:  # the notebook's time is shared by every run of it
            return
        self.revivals += 1
        saved, self.record = self.record, ExecutionRecord()
        # no after-cell reads while reviving: they were taken on the first run, and one that hangs
        # would start a revival inside this one
        hook, self.after_cell = self.after_cell, None
        try:
            await self.run_notebook(prelude, cell_timeout)
        finally:
            self.after_cell = hook
            fresh, self.record = self.record, saved
            self.record.duration_s += fresh.duration_s
            for ev in fresh.limit_events:
                self.record.event(ev)
        if [(c.index, c.status) for c in fresh.cells] != [(c.index, c.status) for c in saved.cells]:
            # not the state the checks so far saw: no kernel rather than a different one
            await self.close()
        else:
            self.record.event("a fresh kernel ran the notebook again for the remaining checks")

    async def _run(
        self, cell: NotebookNode, index: int, timeout: float, output_limit: int
    ) -> tuple[str, list[dict[str, Any]]]:
        if self.client is None:  # the kernel is gone (stopped while this run was waiting its turn)
            return "died", []
        client = self.client
        client.reset_output_budget(output_limit)
        client.timeout = max(1, int(round(timeout)))
        student_nb = client.nb
        if index < 0:  # nbclient stores the executed cell at its index: keep grader code out of the notebook
            client.nb = NotebookNode(cells=[cell], metadata={}, nbformat=4, nbformat_minor=5)
        try:
            await client.async_execute_cell(cell, max(index, 0), store_history=index >= 0)
        except DeadKernelError:
            return "died", list(cell.get("outputs", []))
        except CellTimeoutError:
            return "timeout", list(cell.get("outputs", []))
        except Exception as e:  # e.g. patched json in the kernel garbles its messages
            self.broken = f"the kernel's messages could not be read ({type(e).__name__})"
            return "died", list(cell.get("outputs", []))
        finally:
            client.nb = student_nb
            check_interrupted()  # the grader is stopping: whatever happened to the cell, go no further
        reply = (client.last_reply or {}).get("content", {})
        if not client.idle_seen and reply.get("ename") != "CellTimeoutError":
            # A message over the size limit makes ZeroMQ drop the IOPub connection for good:
            # connect afresh, or every later output (probe answers too) would be lost.
            await self._reconnect_iopub()
        if reply.get("status") == "error":
            if reply.get("ename") == "CellTimeoutError":
                if not await self._recovered():
                    return "hung", list(cell.get("outputs", []))
                return "timeout", list(cell.get("outputs", []))
            return "error", list(cell.get("outputs", []))
        return "ok", list(cell.get("outputs", []))

    async def _reconnect_iopub(self) -> None:
        kc = self.client.kc if self.client is not None else None
        if kc is None:
            return
        self.record.output_truncated = True
        self.record.event("output limit: a message from the kernel was over the size limit and was dropped")
        try:
            kc.iopub_channel.stop()
            kc._iopub_channel = None  # the property makes a new socket
            kc.iopub_channel.start()
        except Exception:
            return
        await asyncio.sleep(0.3)  # let the new subscription reach the kernel

    async def _recovered(self) -> bool:
        """After an interrupt: is the kernel idle again? If not, it is as good as dead."""
        assert self.client is not None
        probe = NotebookNode(cell_type="code", source="pass", metadata={}, outputs=[], execution_count=None)
        self.client.timeout = int(RECOVERY_TIMEOUT)
        self.client.error_on_timeout = {"ename": "CellTimeoutError", "evalue": "", "traceback": []}
        student_nb = self.client.nb
        self.client.nb = NotebookNode(cells=[probe], metadata={}, nbformat=4, nbformat_minor=5)
        try:
            await self.client.async_execute_cell(probe, 0, store_history=False)
        except (DeadKernelError, CellTimeoutError):
            return False
        finally:
            self.client.nb = student_nb
        reply = (self.client.last_reply or {}).get("content", {})
        return reply.get("status") == "ok"

    async def run_notebook(self, prelude: str, cell_timeout: float, cell_reserve: float = 0.0) -> None:
        """Run every code cell; replace the kernel and skip cells that kill it.

        The cells draw on the session's budget but leave `cell_reserve` seconds of it for what
        follows them (probing). Starting a kernel does not count.
        """
        if self._run_args is None:
            self._run_args = (prelude, cell_timeout)
        start = time.monotonic()
        code_cells = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and c.source.strip()]
        while await self._start_or_record(prelude, code_cells):
            runs, died_at = await self._run_cells(code_cells, cell_timeout, cell_reserve)
            if died_at is None:
                self.record.cells = runs
                break
            if not await self._restart(runs, died_at, code_cells, cell_reserve):
                break
        self.record.duration_s = time.monotonic() - start

    async def _run_cells(self, code_cells: list[int], cell_timeout: float,
                         cell_reserve: float) -> tuple[list[CellRun], int | None]:
        """Run the cells in this kernel; what happened to each, and the cell that stopped the kernel
        (None if none did: then every cell has its record)."""
        runs: list[CellRun] = []
        for i in code_cells:
            if i in self._fatal_runs:  # it stopped an earlier kernel: skipped this time
                runs.append(self._fatal_runs[i])
                continue
            if i in self.skip:
                runs.append(CellRun(i, "skipped", NOT_RUN, self.skip[i]))
                continue
            remaining = self.budget.left() - cell_reserve
            if remaining <= 0 or self.record.total_timed_out:
                self.record.total_timed_out = self.record.timed_out = True
                runs.append(CellRun(i, "skipped", "TimeLimit", "the submission's time limit was reached first"))
                continue
            run, died_at = await self._run_cell(i, min(cell_timeout, remaining), cell_timeout, runs)
            runs.append(run)
            if died_at is not None:
                return runs, died_at
            if self.after_cell is not None and run.status in ("ok", "error"):
                await self.after_cell(self, i)
        return runs, None

    async def _run_cell(self, i: int, limit: float, cell_timeout: float,
                        runs: list[CellRun]) -> tuple[CellRun, int | None]:
        """Run cell `i` within `limit` seconds; its record, and the cell that stopped the kernel, if one did.

        A cell the kernel never began blames the one before it, which then moves from `runs` to
        the record returned.
        """
        cell = self.nb.cells[i]
        source = tolerant_imports(cell.source)
        if source != cell.source:
            cell = NotebookNode({**cell, "source": source, "outputs": []})
        began = time.monotonic()
        with self.budget.running():
            status, _ = await self._run(cell, i, limit, MAX_CELL_OUTPUT_BYTES)
        run = CellRun(i, status, output_truncated=self.client.truncated if self.client else False,
                      duration_s=time.monotonic() - began)
        self.record.output_truncated |= run.output_truncated
        if status == "error":
            reply = (self.client.last_reply or {}).get("content", {}) if self.client else {}
            run.ename = str(reply.get("ename", ""))[:200]
            run.evalue = str(reply.get("evalue", ""))[:500]
        elif status in ("timeout", "hung"):
            return self._out_of_time(run, limit, cell_timeout, runs)
        elif status == "died":
            self.record.kernel_died = True
            run.ename, run.evalue = _death_cause(self.km)
            if self.broken:
                run.evalue = f"{self.broken} after this cell"
                self.broken = ""
            return run, i
        return run, None

    def _out_of_time(self, run: CellRun, limit: float, cell_timeout: float,
                     runs: list[CellRun]) -> tuple[CellRun, int | None]:
        """The record of a cell that ran out of time (`timeout`: interrupted; `hung`: it ignored the
        interrupt), and the cell that stopped the kernel, if one did (see `_run_cell`)."""
        self.record.timed_out = True
        if limit < cell_timeout:
            self.record.total_timed_out = True
        which = ("the submission's time limit was reached" if limit < cell_timeout
                 else f"the cell ran longer than {limit:.0f} s")
        if run.status == "timeout":
            run.ename, run.evalue = "Timeout", f"{which}; it was interrupted"
            return run, None
        before = last_ran(runs)
        if self.client is not None and not self.client.started and before is not None:
            # The kernel never began this cell: the one before left it unable to
            # answer (e.g. by patching what the kernel itself runs on). Blame that one.
            self.record.timed_out = any(r.status == "timeout" for r in runs)
            runs.remove(before)
            before.status, before.ename = "died", "KernelUnresponsive"
            before.evalue = ("the kernel stopped answering after this cell; "
                             "the notebook was run again without it")
            self.record.kernel_died = True
            return before, before.index
        # it ignored the interrupt: stop that kernel, go on without this cell
        run.status = "timeout"
        run.ename, run.evalue = "Timeout", (f"{which} and it did not stop when interrupted; "
                                            "the notebook was run again without it")
        return run, run.index

    async def _restart(self, runs: list[CellRun], died_at: int, code_cells: list[int], cell_reserve: float) -> bool:
        """After cell `died_at` stopped the kernel: whether to run the notebook again without it.

        If not (too many restarts, or no time left), the rest of the cells are recorded as not run.
        """
        self.record.fatal_cells.append(died_at)
        self._fatal_runs[died_at] = runs[-1]
        self.record.cells = runs  # kept if we cannot restart
        await self.close()
        out_of_time = self.budget.left() - cell_reserve <= 0
        if self.record.restarts >= MAX_RESTARTS or out_of_time:
            # Mark the rest as not run; there is no live kernel to probe.
            done = {r.index for r in runs}
            why = ("not run: the submission's time limit was reached" if out_of_time
                   else "not run: the kernel kept dying")
            self.record.cells += [CellRun(i, "skipped", "KernelDied", why) for i in code_cells if i not in done]
            return False
        self.record.restarts += 1
        return True

    @property
    def alive(self) -> bool:
        """Whether probes can still run."""
        return self.km is not None and self.client is not None


def _death_cause(km: AsyncKernelManager | None) -> tuple[str, str]:
    """Why the kernel died, where its exit status or its cgroup says."""
    cause = exit_cause(km)
    if cause:
        return "KernelDied", f"the kernel stopped during this cell: {cause}"
    return "KernelDied", "the kernel stopped during this cell"
