"""Executing a submission: every code cell in a fresh kernel, errors recorded, never fatal.

A cell that raises is recorded and execution continues. A cell that exceeds its time is
interrupted; if the kernel does not come back, it is replaced. A cell that kills the kernel
(os._exit, a segfault, a memory limit) is recorded, and the notebook is run again in a fresh
kernel without it, so that what was defined before is still graded.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from grader.errors import GraderError
from grader.kernels.launch import (
    Cgroup,
    KernelLauncher,
    Workspace,
    check_interrupted,
    exit_cause,
    stop_kernel,
)
from grader.run.budget import Budget
from grader.run.runner import enter_workdir_source
from grader.submission.notebook import parse_cell

MAX_CELL_OUTPUT_BYTES = 2 * 1024 * 1024  # per student cell; the rest is dropped, not stored
# What every output message costs against that budget at least: a flood of tiny messages is cut
# off too, before the outputs (and display ids) it leaves add up.
MIN_MESSAGE_COST = 1024
# Messages that nbclient would keep (as outputs, display updates or cleared-and-redrawn output).
_KEPT_MESSAGES = {"stream", "display_data", "update_display_data", "execute_result", "error"}
MAX_PROBE_OUTPUT_BYTES = 32 * 1024 * 1024  # a probe answer carries arrays
MAX_RESTARTS = 4
MAX_REVIVALS = 2  # fresh kernels for probes, after grader code killed one
RECOVERY_TIMEOUT = 5.0  # seconds an interrupted kernel gets to become idle again
READY_TIMEOUT = 60.0  # seconds a started kernel gets to answer
IOPUB_CONNECT_WAIT = 0.05  # seconds for a request's IOPub status before asking again
NOT_RUN = "NotRun"  # the ename of a cell left out on purpose (see execute's `skip`)


@dataclass
class CellRun:
    """What happened to one code cell (index is the 0-based position in the notebook)."""

    index: int
    status: str  # ok | error | timeout | died | skipped
    ename: str = ""
    evalue: str = ""
    output_truncated: bool = False


@dataclass
class ExecutionRecord:
    """What happened when the notebook ran."""

    cells: list[CellRun] = field(default_factory=list)
    timed_out: bool = False  # a cell, or the whole submission, hit its time limit
    total_timed_out: bool = False
    kernel_died: bool = False
    restarts: int = 0
    fatal_cells: list[int] = field(default_factory=list)
    output_truncated: bool = False
    duration_s: float = 0.0
    limit_events: list[str] = field(default_factory=list)  # limits that were hit, in words

    def event(self, text: str) -> None:
        """Note a limit that was hit (once)."""
        if text not in self.limit_events:
            self.limit_events.append(text)

    @property
    def errors(self) -> list[CellRun]:
        """Cells that did not finish normally."""
        return [c for c in self.cells if c.status in ("error", "timeout", "died")]


class _Client(NotebookClient):
    """nbclient with bounded output and the last execute reply kept.

    The grader's memory is bounded for every kind of message: comm messages (widgets and their
    state, buffers) are not handled at all, and every message nbclient would keep (output,
    display updates, results, errors with their tracebacks) counts against the cell's budget
    by its whole size; beyond the budget it is dropped, not stored.
    """

    output_limit = MAX_CELL_OUTPUT_BYTES

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("store_widget_state", False)
        super().__init__(*args, **kwargs)
        self.last_reply: dict[str, Any] | None = None
        self._display_sizes: dict[str, int] = {}  # display id -> size of the data its outputs hold
        self._seen = 0
        self.truncated = False
        self.on_cell_executed = self._keep_reply

    def _keep_reply(self, cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        self.last_reply = execute_reply

    def reset_output_budget(self, limit: int) -> None:
        self.output_limit = limit
        self._seen = 0
        self.truncated = False
        self.last_reply = None
        self.started = False  # the kernel announced it began running the code
        self.idle_seen = False  # ... and that it finished (the last message of a cell on IOPub)

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        kind = str(msg.get("msg_type", ""))
        if kind == "execute_input":
            self.started = True
        elif kind == "status" and msg.get("content", {}).get("execution_state") == "idle":
            self.idle_seen = True
        elif kind.startswith("comm"):  # the grader runs no widgets: nothing of a comm is kept
            return None
        elif kind in _KEPT_MESSAGES:
            content = msg.get("content") or {}
            transient = content.get("transient") if isinstance(content, dict) else None
            display_id = transient.get("display_id") if isinstance(transient, dict) else None
            if not isinstance(display_id, str):
                display_id = None
            room = max(self.output_limit - self._seen, 0)
            size = max(MIN_MESSAGE_COST, _json_size(content, budget=room + 1))
            # An update replaces the data of the outputs with its display id (one copy is kept
            # per id): it costs what it adds. One for an id nbclient does not know is ignored.
            known = display_id is not None and display_id in self._display_id_map
            grows = max(0, size - self._display_sizes.get(display_id, 0)) if known else 0
            if kind == "update_display_data":
                if not known:
                    return None
                cost = grows
            else:
                cost = size + grows
            if self._seen + cost > self.output_limit:
                self.truncated = True
                return None
            self._seen += cost
            if display_id is not None:
                self._display_sizes[display_id] = size
        return super().process_message(msg, cell, cell_index)


def _json_size(obj: Any, budget: int = MAX_PROBE_OUTPUT_BYTES) -> int:
    """Approximate size of decoded JSON, without serialising it again."""
    stack, total = [obj], 0
    while stack and total <= budget:
        o = stack.pop()
        if isinstance(o, str):
            total += len(o)
        elif isinstance(o, dict):
            total += 16 * len(o)
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            total += 8 * len(o)
            stack.extend(o)
        else:
            total += 8
    return total


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
        self.client: _Client | None = None
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
        self.client = _Client(
            self.nb,
            km=self.km,
            timeout=30,
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={"ename": "CellTimeoutError", "evalue": "time limit exceeded", "traceback": []},
            record_timing=False,
            shutdown_kernel="immediate",
            iopub_timeout=4,
        )
        self.client.km = self.km
        kc = self.km.client(context=self.km.context)  # its socket options cap message size
        self.client.kc = kc  # before waiting: close() stops its channels if the kernel never answers
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
        while True:
            runs: list[CellRun] = []
            died_at = None
            if not await self._start_or_record(prelude, code_cells):
                break
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
                cell = self.nb.cells[i]
                source = tolerant_imports(cell.source)
                if source != cell.source:
                    cell = NotebookNode({**cell, "source": source, "outputs": []})
                limit = min(cell_timeout, remaining)
                with self.budget.running():
                    status, _ = await self._run(cell, i, limit, MAX_CELL_OUTPUT_BYTES)
                run = CellRun(i, status, output_truncated=self.client.truncated if self.client else False)
                self.record.output_truncated |= run.output_truncated
                if status == "error":
                    reply = (self.client.last_reply or {}).get("content", {}) if self.client else {}
                    run.ename = str(reply.get("ename", ""))[:200]
                    run.evalue = str(reply.get("evalue", ""))[:500]
                elif status in ("timeout", "hung"):
                    self.record.timed_out = True
                    if limit < cell_timeout:
                        self.record.total_timed_out = True
                    which = ("the submission's time limit was reached" if limit < cell_timeout
                             else f"the cell ran longer than {limit:.0f} s")
                    if status == "timeout":
                        run.ename, run.evalue = "Timeout", f"{which}; it was interrupted"
                    elif self.client is not None and not self.client.started and _last_ran(runs):
                        # The kernel never began this cell: the one before left it unable to
                        # answer (e.g. by patching what the kernel itself runs on). Blame that one.
                        self.record.timed_out = any(r.status == "timeout" for r in runs)
                        run = _last_ran(runs)
                        runs.remove(run)
                        run.status, run.ename = "died", "KernelUnresponsive"
                        run.evalue = ("the kernel stopped answering after this cell; "
                                      "the notebook was run again without it")
                        self.record.kernel_died = True
                        died_at = run.index
                    else:  # it ignored the interrupt: stop that kernel, go on without this cell
                        run.status = "timeout"
                        run.ename, run.evalue = "Timeout", (f"{which} and it did not stop when interrupted; "
                                                            "the notebook was run again without it")
                        died_at = i
                elif status == "died":
                    self.record.kernel_died = True
                    run.ename, run.evalue = _death_cause(self.km)
                    if self.broken:
                        run.evalue = f"{self.broken} after this cell"
                        self.broken = ""
                    died_at = i
                runs.append(run)
                if died_at is not None:
                    break
                if self.after_cell is not None and run.status in ("ok", "error"):
                    await self.after_cell(self, i)
            if died_at is None:
                self.record.cells = runs
                break
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
                break
            self.record.restarts += 1
        self.record.duration_s = time.monotonic() - start

    @property
    def alive(self) -> bool:
        """Whether probes can still run."""
        return self.km is not None and self.client is not None


async def wait_ready(kc: Any, km: AsyncKernelManager, timeout: float) -> None:
    """Wait until the kernel answers on its shell channel and its IOPub messages reach us.

    As jupyter_client's wait_for_ready, without its fixed waits: it waits 0.2 s for an IOPub
    message, and then for 0.2 s of IOPub silence, on every kernel start. Here each kernel_info
    request is followed by the IOPub status of that very request (a short wait: if it does not
    come, the subscription was not connected yet, and the request is sent again).
    """
    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        reply = await _reply_to(kc.shell_channel, msg_id, None, min(1.0, max(deadline - time.monotonic(), 0.01)))
        if reply is not None and await _reply_to(kc.iopub_channel, msg_id, "status", IOPUB_CONNECT_WAIT) is not None:
            kc._handle_kernel_info_reply(reply)
            return
        if not await km.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")


async def _reply_to(channel: Any, msg_id: str, kind: str | None, timeout: float) -> dict[str, Any] | None:
    """The first message on `channel` answering request `msg_id` within `timeout` seconds (for
    `status`: the one saying the kernel is idle after it), or None; other messages are dropped."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        try:
            msg = await channel.get_msg(timeout=left)
        except Empty:
            return None
        if (msg.get("parent_header") or {}).get("msg_id") != msg_id:
            continue
        if kind is None or (msg.get("msg_type") == kind
                            and (msg.get("content") or {}).get("execution_state") == "idle"):
            return msg
    return None


def _unavailable(module: str) -> bool:
    """Whether this Python (the kernel's too) lacks a top-level module; only the name is looked up."""
    try:
        return importlib.util.find_spec(module.partition(".")[0]) is None
    except (ImportError, ValueError):
        return True


def tolerant_imports(source: str) -> str:
    """The cell's source with each top-level import of a module this Python lacks made non-fatal.

    `from google.colab import drive` or `import seaborn as sns` placed before `import numpy as np`
    would otherwise stop the whole cell, and every check would fail on a missing np. The import
    still fails (a note goes to stderr) and a later use of the module still raises.
    """
    lines = source.splitlines()
    tree = parse_cell(source)
    if tree is None:
        return source
    spans = [(n.lineno, n.end_lineno or n.lineno) for n in tree.body]
    wrap = []
    for node, (first, last) in zip(tree.body, spans):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        alone = sum(1 for a, b in spans if a <= last and b >= first) == 1  # not `import x; y = 1`
        if alone and node.col_offset == 0 and any(_unavailable(m) for m in modules):
            if isinstance(node, ast.Import):  # one statement per module: `import seaborn, numpy`
                parts = [([f"import {a.name}" + (f" as {a.asname}" if a.asname else "")],
                          [a.asname or a.name.partition(".")[0]] if _unavailable(a.name) else [])
                         for a in node.names]
            else:
                parts = [(lines[first - 1:last], [a.asname or a.name for a in node.names])]
            wrap.append((first, last, parts))
    for first, last, parts in reversed(wrap):
        new: list[str] = []
        for text, bound in parts:
            if not bound:
                new += text
                continue
            # each name the import would bind raises the import's own error when it is used
            new += ["try:", *["    " + ln for ln in text], "except ImportError as _grader_import_error:",
                    *[f"    {name} = _grader_missing(_grader_import_error)" if name != "*" else "    pass"
                      for name in bound]]
        lines[first - 1:last] = new
    return "\n".join([_MISSING, *lines, "del _grader_missing"]) if wrap else source


_MISSING = """class _grader_missing:
    def __init__(self, error):
        object.__setattr__(self, "_error", error)
    def _fail(self, *args, **kwargs):
        e = object.__getattribute__(self, "_error")
        raise type(e)(*e.args)
    __getattr__ = __call__ = __getitem__ = _fail"""


def unrun_definitions(nb: NotebookNode, record: ExecutionRecord, raised: bool = False) -> dict[str, CellRun]:
    """Top-level names defined by cells that did not run to the end (timed out, skipped, fatal;
    with `raised`, also cells that raised).

    So a check of such a name can say why it could not run, instead of "missing".
    """
    out: dict[str, CellRun] = {}
    finished = ("ok",) if raised else ("ok", "error")
    for run in record.cells:
        if run.status in finished or not 0 <= run.index < len(nb.cells):
            continue
        tree = parse_cell(nb.cells[run.index].source)
        if tree is None:
            continue
        for node in tree.body:
            names: list[str] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            for name in names:
                out.setdefault(name, run)
    return out


def _last_ran(runs: list[CellRun]) -> CellRun | None:
    """The last cell of this kernel that ran (ok or error), if any."""
    return next((r for r in reversed(runs) if r.status in ("ok", "error")), None)


def _death_cause(km: AsyncKernelManager | None) -> tuple[str, str]:
    """Why the kernel died, where its exit status or its cgroup says."""
    cause = exit_cause(km)
    if cause:
        return "KernelDied", f"the kernel stopped during this cell: {cause}"
    return "KernelDied", "the kernel stopped during this cell"


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
