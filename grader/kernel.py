"""Starting and stopping the kernel that runs a submission; the only module that knows how.

The kernel is always the grader's own Python (whatever kernelspec the notebook names),
started over IPC sockets in a fresh working folder, with a minimal environment and
resource limits applied before the interpreter starts.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

# Files beside a notebook that its code may import or read (`import my_answers`, data files).
SIBLING_SUFFIXES = {".py", ".csv", ".txt", ".npy", ".npz", ".json", ".pkl", ".dat", ".tsv"}
SIBLING_MAX_BYTES = 20 * 1024 * 1024
# Environment variables worth keeping: they change numeric results or where things run, not secrets.
PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ")


@dataclass(frozen=True)
class Limits:
    """Resource limits for one kernel and its children."""

    memory_mb: int = 2048
    processes: int = 256
    file_size_mb: int = 256
    open_files: int = 1024

    def rlimits(self) -> dict[str, int]:
        """As `resource` module limits."""
        mb = 1024 * 1024
        return {
            "RLIMIT_AS": self.memory_mb * mb,
            # NPROC counts every process and thread of the user, so allow for those already running.
            "RLIMIT_NPROC": _user_tasks() + self.processes,
            "RLIMIT_FSIZE": self.file_size_mb * mb,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }


def _user_tasks() -> int:
    """Processes and threads this user runs now."""
    uid = os.getuid()
    total = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                total += p.info["num_threads"] or 1
        except (psutil.Error, TypeError):
            continue
    return total


# Applies the limits, then becomes the kernel. Runs as `python -c`, before any student code.
_LIMITED_EXEC = """
import os, resource, sys, json
for name, value in json.loads(sys.argv[1]).items():
    try:
        soft, hard = resource.getrlimit(getattr(resource, name))
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError, AttributeError):
        pass
os.execv(sys.argv[2], sys.argv[2:])
"""


@dataclass
class Workspace:
    """The folders of one run: `work` (the kernel's cwd) and `runtime` (sockets, config)."""

    root: Path
    work: Path = field(init=False)
    runtime: Path = field(init=False)

    def __post_init__(self) -> None:
        self.work = self.root / "work"
        self.runtime = self.root / "rt"
        self.work.mkdir()
        self.runtime.mkdir()
        (self.runtime / "ipython").mkdir()

    def cleanup(self) -> None:
        """Remove everything the run wrote."""
        shutil.rmtree(self.root, ignore_errors=True)


def make_workspace(notebook: Path, extra_files: list[Path] | None = None) -> Workspace:
    """A fresh folder holding the notebook, the files beside it that code may use, and shipped files."""
    ws = Workspace(Path(tempfile.mkdtemp(prefix="grader-")))
    shutil.copyfile(notebook, ws.work / notebook.name)
    try:
        siblings = list(notebook.parent.iterdir())
    except OSError:
        siblings = []
    for p in siblings:
        if p.suffix.lower() in SIBLING_SUFFIXES and p.is_file() and not p.is_symlink():
            try:
                if p.stat().st_size <= SIBLING_MAX_BYTES:
                    shutil.copyfile(p, ws.work / p.name)
            except OSError:
                continue
    for src in extra_files or []:
        dest = ws.work / src.name
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dest)
    return ws


class KernelLauncher(Protocol):
    """Starts a kernel for a workspace. Swap it to change how kernels are made."""

    async def start(self, workspace: Workspace) -> AsyncKernelManager: ...

    def describe(self) -> dict[str, object]: ...


class LocalKernelLauncher:
    """A new ipykernel process of the grader's own Python, limited and with a minimal environment."""

    def __init__(self, limits: Limits | None = None, python: str | None = None):
        self.limits = limits or Limits()
        self.python = python or sys.executable

    def kernel_env(self, ws: Workspace) -> dict[str, str]:
        """Only what a kernel needs: no tokens, keys or CI variables of the grader's environment."""
        bindir = str(Path(self.python).parent)
        env = {
            "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(ws.work),
            "TMPDIR": str(ws.work),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(ws.runtime / "mpl"),
            "IPYTHONDIR": str(ws.runtime / "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        for key in PASSTHROUGH_ENV:
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def argv(self) -> list[str]:
        """The kernel command: limits first, then ipykernel of our own interpreter."""
        return [
            self.python,
            "-c",
            _LIMITED_EXEC,
            json.dumps(self.limits.rlimits()),
            self.python,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--HistoryManager.enabled=False",
            "--IPKernelApp.quiet=True",
        ]

    async def start(self, workspace: Workspace) -> AsyncKernelManager:
        """Start the kernel with its cwd in the workspace."""
        km = AsyncKernelManager(
            transport="ipc",
            ip=str(workspace.runtime / "k"),
            connection_file=str(workspace.runtime / "kernel.json"),
        )
        km._kernel_spec = KernelSpec(  # always our interpreter, never the notebook's kernelspec
            argv=self.argv(),
            display_name="grader",
            language="python",
            interrupt_mode="signal",
        )
        await km.start_kernel(cwd=str(workspace.work), env=self.kernel_env(workspace))
        return km

    def describe(self) -> dict[str, object]:
        """What this launcher guarantees, for the report."""
        return {
            "kind": "local-process",
            "memory_mb": self.limits.memory_mb,
            "processes": self.limits.processes,
            "file_size_mb": self.limits.file_size_mb,
            "network": "not isolated",
            "filesystem": "private working folder; the rest of the machine is readable",
            "environment": "minimal",
        }


async def stop_kernel(km: AsyncKernelManager) -> None:
    """Stop a kernel and everything it started, and remove its connection files."""
    pgid = None
    provisioner = getattr(km, "provisioner", None)
    if provisioner is not None:
        pgid = getattr(provisioner, "pgid", None)
    try:
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
    except Exception:  # already gone: nothing to stop
        pass
    if pgid:  # children the student started (subprocesses, forks) share the process group
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        pending = km.cleanup_resources()
        if inspect.isawaitable(pending):
            await pending
    except Exception:
        pass
