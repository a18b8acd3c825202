"""Stopping a kernel and everything it started (its process tree, what left it, its cgroup, its
user's processes), and telling why a kernel ended (`exit_cause`)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal

import psutil
from jupyter_client.manager import AsyncKernelManager

from grader.kernels.cgroups import Cgroup
from grader.kernels.tracking import live_kernels, track
from grader.kernels.users import kill_tree, kill_user


async def stop_kernel(km: AsyncKernelManager) -> None:
    """Stop a kernel and everything it started, and remove its connection files and cgroup."""
    provisioner = getattr(km, "provisioner", None)
    pgid = getattr(provisioner, "pgid", None) if provisioner is not None else None
    proc = getattr(provisioner, "process", None) if provisioner is not None else None
    pid = getattr(proc, "pid", None)
    # Scanning processes and waiting for them to die block: in a thread, not on the event loop
    # (other kernels are being run meanwhile); shielded, so that it is never cut short.
    descendants = await asyncio.shield(asyncio.to_thread(_descendants, pid)) if pid else []
    try:
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
    except Exception:  # already gone: nothing to stop
        pass
    await asyncio.shield(asyncio.to_thread(_kill_all, km, pid, pgid, descendants))
    try:
        pending = km.cleanup_resources()
        if inspect.isawaitable(pending):
            await pending
    except Exception:
        pass
    with contextlib.suppress(Exception):
        km.context.destroy(linger=0)
    release = getattr(provisioner, "release", None)
    if callable(release):  # last: until now the kernel's pid may still be signalled
        release()


def _descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _kill_all(km: AsyncKernelManager, pid: int | None, pgid: int | None,
              descendants: list[psutil.Process]) -> None:
    """Kill a stopped kernel's process tree, what left it, its cgroup and its user's processes."""
    if pid:
        kill_tree(pid, pgid)
        track(live_kernels, pid, remove=True)
    for p in descendants:  # children that left the process group
        with contextlib.suppress(psutil.Error):
            p.kill()
    cgroup = getattr(km, "grader_cgroup", None)
    if isinstance(cgroup, Cgroup):
        cgroup.destroy()
    uid = getattr(km, "grader_uid", None)
    if isinstance(uid, int):  # whatever left the process group, the tree and the cgroup: by its user
        kill_user(uid)


def exit_cause(km: AsyncKernelManager | None) -> str:
    """Why a kernel stopped, as far as its exit status and its cgroup tell ("" if unknown)."""
    if km is None:
        return ""
    cgroup = getattr(km, "grader_cgroup", None)
    code = None
    with contextlib.suppress(Exception):
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        if proc is not None:
            code = proc.poll()
    wrapped = getattr(km, "grader_level", "process") != "process"
    signame = ""
    if code is not None and code < 0:
        signame = _signame(-code)
    elif code is not None and wrapped and 128 < code < 128 + 65:  # bwrap/unshare report a signal so
        signame = _signame(code - 128)
    if isinstance(cgroup, Cgroup) and cgroup.oom_kills() > 0:
        return f"it used more than the memory limit and was killed ({signame or 'SIGKILL'})"
    if signame:
        hint = ""
        if signame == "SIGKILL":
            hint = " (likely a resource limit)"
        elif signame in ("SIGSEGV", "SIGBUS", "SIGABRT"):
            hint = " (a crash in native code)"
        elif signame == "SIGXFSZ":
            hint = " (it wrote a file larger than the file size limit)"
        return f"it was killed by {signame}{hint}"
    if code is not None:
        return f"it exited with status {code} (os._exit or sys.exit in native code?)"
    return ""


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"
