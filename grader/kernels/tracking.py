"""What this grader process has running, and stopping it cleanly: every kernel not yet stopped,
every cgroup, kernel user and temporary folder not yet removed is recorded here (`track`), and
`cleanup_all` removes what is left at exit or on an interruption. `interruptible` turns Ctrl-C,
SIGTERM and SIGHUP into a clean stop of the grading task.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from grader.kernels.users import kill_tree, kill_user, remove_tree


class Destroyable(Protocol):
    """What is recorded of a kernel's cgroup (a `cgroups.Cgroup`): it can be killed and removed."""

    def destroy(self) -> None: ...


live_lock = threading.Lock()
live_roots: set[Path] = set()
live_kernels: dict[int, int] = {}  # pid -> process group of every kernel not yet stopped
live_cgroups: dict[int, Destroyable] = {}  # id -> cgroup
live_uids: set[int] = set()  # kernel users whose processes are killed at exit


def track(kind: dict[Any, Any] | set[Any], key: Any, value: Any = None, remove: bool = False) -> None:
    """Record `key` (with `value`, for a dict) in one of the live records, or drop it (`remove`)."""
    with live_lock:
        if remove:
            if isinstance(kind, dict):
                kind.pop(key, None)
            else:
                kind.discard(key)
        elif isinstance(kind, dict):
            kind[key] = value
        else:
            kind.add(key)


def cleanup_all() -> None:
    """Kill every kernel and remove every temp folder and cgroup this process still has.

    The normal path cleans up after each run; this is the safety net for an interrupted
    grader (Ctrl-C, SIGTERM), and runs at exit.
    """
    with live_lock:
        kernels = dict(live_kernels)
        cgroups = list(live_cgroups.values())
        roots = list(live_roots)
        uids = list(live_uids)
        live_kernels.clear()
        live_cgroups.clear()
        live_roots.clear()
        live_uids.clear()
    for pid, pgid in kernels.items():
        kill_tree(pid, pgid)
    for uid in uids:
        kill_user(uid)
    for cg in cgroups:
        cg.destroy()
    for root in roots:
        remove_tree(root)


atexit.register(cleanup_all)


_interrupted = threading.Event()


def interrupted() -> bool:
    """Whether the grader was told to stop (Ctrl-C, SIGTERM, SIGHUP) during `interruptible()`."""
    return _interrupted.is_set()


def check_interrupted() -> None:
    """Raise CancelledError if the grader was told to stop: no more kernel work."""
    if _interrupted.is_set():
        raise asyncio.CancelledError("the grader was interrupted")


@contextlib.contextmanager
def interruptible(task: asyncio.Task[Any] | None = None) -> Iterator[None]:
    """While grading, SIGINT, SIGTERM and SIGHUP stop the run cleanly.

    By default SIGTERM ends Python at once, leaving kernels and temp folders behind. Here a
    signal sets a flag and cancels `task` (the grading coroutine's task), so its cleanup code
    runs on the way out; nbclient reports a cancelled cell as a dead kernel, so the execution
    layer checks the flag after every kernel call and goes no further (no restart). Without
    a task the signal raises KeyboardInterrupt. Only the main thread can install handlers;
    elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _interrupted.clear()
    loop = task.get_loop() if task is not None else None

    def stop(signum: int, frame: Any) -> None:
        _interrupted.set()
        if task is None or loop is None or task.done() or loop.is_closed():
            raise KeyboardInterrupt
        loop.call_soon_threadsafe(task.cancel)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)
