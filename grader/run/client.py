"""The kernel's client: nbclient with bounded output, and waiting until a started kernel answers.

Every message the kernel sends costs the grader memory only up to a limit per cell (per grader
request: MAX_PROBE_OUTPUT_BYTES); what is over it is dropped, not stored. Used by the session
(grader/run/session.py), which starts the kernels and runs the cells.
"""

from __future__ import annotations

import secrets
import time
from queue import Empty
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode

MAX_CELL_OUTPUT_BYTES = 2 * 1024 * 1024  # per student cell; the rest is dropped, not stored
# What every output message costs against that budget at least: a flood of tiny messages is cut
# off too, before the outputs (and display ids) it leaves add up.
MIN_MESSAGE_COST = 1024
# Messages that nbclient would keep (as outputs, display updates or cleared-and-redrawn output).
_KEPT_MESSAGES = {"stream", "display_data", "update_display_data", "execute_result", "error"}
MAX_PROBE_OUTPUT_BYTES = 32 * 1024 * 1024  # a probe answer carries arrays
IOPUB_CONNECT_WAIT = 0.05  # seconds for a request's IOPub status before asking again


class BoundedClient(NotebookClient):
    """nbclient with bounded output and the last execute reply kept.

    The grader's memory is bounded for every kind of message: comm messages (widgets and their
    state, buffers) are not handled at all, and every message nbclient would keep (output,
    display updates, results, errors with their tracebacks) counts against the cell's budget
    by its whole size; beyond the budget it is dropped, not stored.
    """

    output_limit = MAX_CELL_OUTPUT_BYTES

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("store_widget_state", False)
        # nbclient leaves out cells tagged `skip-execution`; grading runs what the student wrote,
        # whatever the cells' metadata says, so no tag a notebook can carry turns a cell off.
        kwargs["skip_cells_with_tag"] = f"grader-never-{secrets.token_hex(16)}"
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


def client_for(nb: NotebookNode, km: AsyncKernelManager) -> BoundedClient:
    """A client for a started kernel, with its kernel client (whose socket options cap message size)."""
    client = BoundedClient(
        nb,
        km=km,
        timeout=30,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "time limit exceeded", "traceback": []},
        record_timing=False,
        shutdown_kernel="immediate",
        iopub_timeout=4,
    )
    client.km = km
    client.kc = km.client(context=km.context)
    return client


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
