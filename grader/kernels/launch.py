"""Starting the kernel that runs a submission, cold: a new interpreter, fenced off; the only
module that knows how (but for warm.py, which forks kernels from a warm parent into the same
fences).

The kernel is always the Python of the assignment's kernel environment (envs.py; whatever
kernelspec the notebook names), never the grader's own environment,
started over IPC sockets in a fresh working folder, with a minimal environment and
resource limits applied before the interpreter starts. How far it is fenced off from the
rest of the machine is the isolation level (strongest available is chosen by default):

- `sandbox` (bubblewrap): its own filesystem view (the system and the Python install
  read-only, only its working folder writable; the grader, the assignments and the home
  folders are not there), no network, its own process, IPC and host-name namespaces, no
  capabilities, and it dies with the grader.
- `namespace` (unshare): no network and its own process namespace; the filesystem is the
  grader user's.
- `process`: a plain child process; network and filesystem are the grader user's.

At every level: a minimal environment, a private working folder (workspace.py), rlimits (address
space, file size, open files, no core dumps, processes where the kernel enforces them; limits.py),
and, where a writable cgroup exists, a cgroup with a memory and a process limit for the kernel and
all its children (cgroups.py). Between the grader and the kernel, limited_exec.py applies them.
`describe()` says which of these a run actually got; isolation.py remembers which levels work.

When the grader runs as root, the kernel never is: at every level it runs as a fresh
unprivileged user of its own (no groups, no new privileges), which cannot leave its cgroup,
signal the grader or write the grader's files, and every process of that user is killed
after the run (`Workspace.hand_to`, `users.kill_user`).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from grader.errors import GraderError
from grader.kernels.cgroups import Cgroup, cgroup_support
from grader.kernels.isolation import (
    SANDBOX_UID,
    bwrap_args,
    forget_level,
    interpreter_dirs,
    remember_level,
    remembered_levels,
    stat_key,
    system_key,
)
from grader.kernels.limits import MAX_MESSAGE_BYTES, MAX_QUEUED_MESSAGES, Limits
from grader.kernels.stop import stop_kernel
from grader.kernels.tracking import live_cgroups, live_kernels, track
from grader.kernels.users import fresh_kernel_uid, is_root, user_tasks
from grader.kernels.workspace import KernelDirs, Workspace
from grader.options import ISOLATION_LEVELS

if TYPE_CHECKING:
    from grader.kernels.envs import KernelEnv

# Environment variables worth keeping: they change numeric results or where things run, not secrets.
PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ")
# The program run as `python -c` between the grader and the kernel (see limited_exec.py).
_LIMITED_EXEC = (Path(__file__).parent / "limited_exec.py").read_text(encoding="utf-8")
# The kernel's program: numpy (which the probe runner imports first thing) loaded while the
# kernel boots, as a warm parent has it loaded: a kernel started ahead (the re-run's) then has
# it before it is needed. Nothing else: ipykernel then starts as `python -m ipykernel_launcher` would.
_KERNEL_MAIN = ("import numpy, runpy\n"
                "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)")


class KernelLauncher(Protocol):
    """Starts a kernel for a workspace. Swap it to change how kernels are made."""

    async def start(self, workspace: Workspace) -> AsyncKernelManager: ...

    def describe(self) -> dict[str, object]: ...


@functools.cache
def _works(argv: tuple[str, ...]) -> tuple[bool, str]:
    """Whether a command (a wrapper around a Python import) runs here (cached per process)."""
    try:
        r = subprocess.run(list(argv), capture_output=True, timeout=30, text=True, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)[:200]
    if r.returncode != 0:
        return False, (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1][:200]
    return True, ""


@functools.cache
def _probe_uid() -> int:
    """The kernel user of the runs that check whether a level works (one per grader process)."""
    return fresh_kernel_uid()


class LocalKernelLauncher:
    """A new ipykernel process of a kernel environment's Python, limited, with a minimal environment.

    `python` is the interpreter the kernel runs (default: the grader's own); grading binds the
    assignment's kernel environment with `with_env`, which sets it to that environment's.

    `isolation` is "auto" (the strongest level that works here), or one of ISOLATION_LEVELS;
    asking for a level that is not available is an error. Unset, it is read from the
    NNGRADER_ISOLATION environment variable (default "auto"). `cgroup=False` skips cgroups.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        python: str | None = None,
        isolation: str | None = None,
        cgroup: bool = True,
    ):
        isolation = isolation or os.environ.get("NNGRADER_ISOLATION") or "auto"
        if isolation not in ("auto", *ISOLATION_LEVELS):
            raise GraderError(
                f"unknown isolation level {isolation!r} (choose auto, {', '.join(ISOLATION_LEVELS)})"
            )
        self.limits = limits or Limits()
        self.python = python or sys.executable
        self.requested = isolation
        self.use_cgroup = cgroup
        self.unavailable: dict[str, str] = {}  # level -> why it could not be used
        self.from_cache = False  # whether the level was remembered rather than probed
        self.level = self._choose(isolation)
        self.cgroup_note = ""  # why the last kernel has no cgroup
        self.last_cgroup: Cgroup | None = None
        self.last_uid: int | None = None  # the last kernel's user, when the grader is root
        self.env: KernelEnv | None = None  # the kernel environment `python` belongs to, if bound

    def with_env(self, env: KernelEnv) -> LocalKernelLauncher:
        """The same launcher running kernels from `env`'s interpreter (the level is checked anew)."""
        if self.env == env:
            return self
        bound = copy.copy(self)  # (a subclass stays itself)
        bound.python, bound.env, bound.unavailable = env.python, env, {}
        bound.level = bound._choose(self.requested)
        return bound

    # -- choosing a level

    def _choose(self, wanted: str, use_cache: bool = True) -> str:
        order = ISOLATION_LEVELS if wanted == "auto" else (wanted,)
        remembered = remembered_levels() if use_cache else {}
        for level in order:
            if level == "process" and not is_root():
                return level
            if remembered.get(self._level_key(level)) == level:
                self.from_cache = True
                return level
            # The real thing: our Python, importing the kernel, inside the wrapper, as the kernel's user.
            ok, why = _works(tuple(self._limited(level, [self.python, "-c", "import ipykernel"], probe=True)))
            if ok:
                self._remember(level)
                return level
            self.unavailable[level] = why
            if level == "process":  # never root: if the kernel cannot run as a user of its own, it does not run
                raise GraderError(f"the kernel cannot run as an unprivileged user here: {why}")
        if wanted != "auto":
            raise GraderError(f"isolation level {wanted!r} is not available here: {self.unavailable[wanted]}")
        return "process"

    def _level_key(self, level: str) -> str:
        """What a probe of `level` depends on: the wrapper, our Python, the user, the system."""
        wrapper = self._wrapper(level, probe=True)
        facts = [level, is_root(), os.geteuid(), stat_key(self.python), stat_key(os.path.realpath(self.python)),
                 [stat_key(d) for d in self._python_dirs()], wrapper, stat_key(wrapper[0] if wrapper else None),
                 system_key()]
        return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()

    def _remember(self, level: str) -> None:
        remember_level(self._level_key(level), level)

    def _forget(self, level: str) -> None:
        forget_level(self._level_key(level))

    def recheck(self) -> bool:
        """After a kernel failed to start: if the level was remembered rather than probed, forget it
        and probe the levels again; whether starting again is worth trying."""
        if not self.from_cache:
            return False
        self.from_cache = False
        self._forget(self.level)
        self.unavailable.clear()
        self.level = self._choose(self.requested, use_cache=False)
        return True

    def _wrapper(self, level: str, workspace: Workspace | None = None, probe: bool = False) -> list[str]:
        """The command that puts the kernel in its namespaces (empty for `process`)."""
        if level == "namespace":
            exe = shutil.which("unshare")
            if exe is None:
                return ["/nonexistent/unshare"]
            # A /proc of its own: the grader's processes (and their folders) are not listed.
            args = [exe, "--net", "--ipc", "--pid", "--fork", "--kill-child", "--mount-proc"]
            if not is_root():
                args.insert(1, "--map-root-user")
            return args
        if level == "sandbox":
            exe = shutil.which("bwrap")
            if exe is None:
                return ["/nonexistent/bwrap"]
            return [exe, *self._bwrap_args(workspace, probe)]
        return []

    def _limited(self, level: str, command: list[str], workspace: Workspace | None = None,
                 cgroup: Cgroup | None = None, probe: bool = False) -> list[str]:
        """`command` as the kernel runs it: limits and (as root) its own user, then its namespaces."""
        uid = None
        if is_root():
            uid = workspace.uid if workspace is not None and workspace.uid is not None else _probe_uid()
        tasks = 0 if probe else user_tasks(uid)
        if uid is not None and cgroup is not None:
            tasks += self.limits.processes  # the cgroup's limit binds first (and tells it was hit)
        cfg: dict[str, Any] = {
            "rlimits": {} if probe else self.limits.rlimits(tasks),
            "cgroups": cgroup.procs_files() if cgroup else [],
            "pdeathsig": True,
        }
        if workspace is not None and workspace.nice:
            cfg["nice"] = workspace.nice
        inner: list[str] = []
        if uid is not None:
            cfg["reach"] = self._reach(workspace)
            if workspace is not None:
                cfg["owner"], cfg["give"] = uid, [str(workspace.connection_file)]
            if level == "namespace":  # unshare needs root: the change of user happens inside it
                inner = [self.python, "-I", "-S", "-c", _LIMITED_EXEC, json.dumps({"uid": uid, "pdeathsig": True})]
            else:
                cfg["uid"] = uid
        return [self.python, "-I", "-S", "-c", _LIMITED_EXEC, json.dumps(cfg),
                *self._wrapper(level, workspace, probe), *inner, *command]

    def _reach(self, ws: Workspace | None) -> list[str]:
        """Folders the kernel's user must reach: the Python it runs and its workspace."""
        dirs = {os.path.realpath(d) for d in self._python_dirs()}
        if ws is not None:
            dirs.add(os.path.realpath(ws.root))
        return sorted(dirs)

    def _bwrap_args(self, ws: Workspace | None, probe: bool) -> list[str]:
        return bwrap_args(self._python_dirs(), ws, probe)

    def _python_dirs(self) -> list[str]:
        """The Python install and environment the kernel runs from, and nothing beside them."""
        exe = Path(self.python)
        cands = {*interpreter_dirs(self.python), str(exe.parent), str(exe.resolve().parent.parent)}
        dirs = sorted({os.path.realpath(c) for c in cands} | cands)
        dirs = [d for d in dirs if os.path.isdir(d) and not d.startswith(("/usr/", "/proc/"))
                and d not in ("/", "/usr", "/tmp", "/proc")]
        # A folder inside another one is bound with it.
        return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]

    # -- starting a kernel

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
            "JUPYTER_PLATFORM_DIRS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        env.update((ws.kdirs or ws.new_kernel_dirs()).env())
        for key in PASSTHROUGH_ENV:
            if key in os.environ:
                env[key] = os.environ[key]
        return env

    def argv(self, workspace: Workspace | None = None, cgroup: Cgroup | None = None) -> list[str]:
        """The kernel command: limits first, then the namespaces, then ipykernel of our interpreter."""
        kernel = [
            self.python,
            "-c",
            _KERNEL_MAIN,
            "-f",
            "{connection_file}",
            "--HistoryManager.enabled=False",
            "--IPKernelApp.quiet=True",
        ]
        if self.level != "process":
            # In its own process namespace the kernel's parent is pid 1, which ipykernel takes for
            # "the parent has exited"; the wrapper kills the kernel when the grader goes instead.
            kernel.append("--IPKernelApp.parent_handle=0")
        return self._limited(self.level, kernel, workspace, cgroup)

    async def start(self, workspace: Workspace) -> AsyncKernelManager:
        """Start a kernel in fresh, read-only start-up folders (the prelude then enters the work folder)."""
        # folders, cgroup and user are made with blocking calls (a scan of every process among
        # them): in a thread, so that the kernels already running are not held up meanwhile
        kdirs, cgroup, self.cgroup_note = await asyncio.to_thread(self._prepare, workspace)
        self.last_cgroup = cgroup
        if workspace.uid is not None:
            self.last_uid = workspace.uid
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        context.setsockopt(zmq.RCVHWM, MAX_QUEUED_MESSAGES)
        context.setsockopt(zmq.LINGER, 0)
        km = _KernelManager(
            transport="ipc",
            ip=str(kdirs.sockets / "k"),
            connection_file=str(workspace.connection_file),
            context=context,
        )
        km._kernel_spec = KernelSpec(  # always our interpreter, never the notebook's kernelspec
            argv=self.argv(workspace, cgroup),
            display_name="grader",
            language="python",
            # A wrapper process (bwrap, unshare) would die of SIGINT and take the kernel with it.
            interrupt_mode="signal" if self.level == "process" else "message",
        )
        km.grader_cgroup = cgroup  # type: ignore[attr-defined]
        km.grader_level = self.level  # type: ignore[attr-defined]
        km.grader_uid = workspace.uid  # type: ignore[attr-defined]
        # Never the grader's own stdout/stderr: what the kernel writes there could pass for a report.
        log = open(kdirs.root / "kernel.log", "xb")  # noqa: SIM115 (closed below)
        try:
            provisioner = self.provisioner_for(km, workspace, cgroup)
            if provisioner is not None:  # jupyter_client then starts (and restarts) the kernel through it
                km.provisioner = provisioner
            await km.start_kernel(cwd=str(kdirs.cwd), env=self.kernel_env(workspace),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        except BaseException:
            await stop_kernel(km)
            raise
        finally:
            log.close()
        proc = getattr(km.provisioner, "process", None)
        if proc is not None:
            track(live_kernels, proc.pid, getattr(km.provisioner, "pgid", None) or proc.pid)
        return km

    def _prepare(self, workspace: Workspace) -> tuple[KernelDirs, Cgroup | None, str]:
        """A kernel's fresh start-up folders, its cgroup (or why none) and, as root, its user."""
        kdirs = workspace.new_kernel_dirs()
        cgroup, note = None, "not requested"
        if self.use_cgroup:
            cgroup, note = Cgroup.create(self.limits)
            if cgroup is not None:
                track(live_cgroups, id(cgroup), cgroup)
        if is_root():  # the kernel runs as a user of its own, never as root
            workspace.hand_to(workspace.uid if workspace.uid is not None else fresh_kernel_uid())
        return kdirs, cgroup, note

    def provisioner_for(self, km: AsyncKernelManager, workspace: Workspace,
                        cgroup: Cgroup | None) -> Any:
        """A kernel provisioner that starts the kernel in place of a new process of `argv()`, or None."""
        return None

    def describe(self) -> dict[str, object]:
        """What this launcher guarantees, for the report."""
        level = self.level
        d: dict[str, Any] = {
            "level": level,
            "requested": self.requested,
            "environment": "minimal (no variables of the grader's environment but locale/BLAS settings)",
            "working_folder": "a fresh temporary folder with only the submission and the assignment's files",
            "memory_mb": self.limits.memory_mb,
            "processes": self.limits.processes,
            "file_size_mb": self.limits.file_size_mb,
            "open_files": self.limits.open_files,
            "max_message_mb": MAX_MESSAGE_BYTES // 2**20,
        }
        root = is_root()
        uid = f"uid {self.last_uid}" if self.last_uid is not None else "a fresh uid per submission"
        own_user = (f"an unprivileged user of its own ({uid}): no groups, no capabilities, no set-user-ID "
                    "programs; it cannot signal the grader or write the grader's files")
        if level == "sandbox":
            d["network"] = "none (own network namespace)"
            d["filesystem"] = ("own view: system and Python install read-only, only the working "
                               "folder writable; grader, assignments and home folders absent")
            d["user"] = f"uid {SANDBOX_UID} in a user namespace, no capabilities"
            if root:
                d["user"] += f"; on the host, {own_user}"
        elif level == "namespace":
            d["network"] = "none (own network namespace)"
            d["filesystem"] = ("readable as an unprivileged user; writable only in its working folder and "
                               "world-writable folders" if root else "the grader user's: readable and writable as that user")
            d["user"] = own_user if root else "the grader's user"
        else:
            d["network"] = "NOT isolated: the kernel can reach the network"
            d["filesystem"] = ("readable as an unprivileged user; writable only in its working folder and "
                               "world-writable folders" if root else "the grader user's: readable and writable as that user")
            d["user"] = own_user if root else "the grader's user"
        cg_kind, note = (self.last_cgroup.describe(), "") if self.last_cgroup else (None, self.cgroup_note)
        if self.last_cgroup is None and not self.cgroup_note and self.use_cgroup:  # no kernel yet: try
            cg_kind, note = cgroup_support()
        if cg_kind is not None:
            d["memory_limit"] = f"{cg_kind}: {self.limits.memory_mb} MB for the kernel and its children"
            d["process_limit"] = f"{cg_kind}: {self.limits.processes} processes"
        else:
            d["memory_limit"] = f"per process (RLIMIT_AS {self.limits.memory_mb} MB); no cgroup ({note})"
            if root:
                d["process_limit"] = f"RLIMIT_NPROC: {self.limits.processes} processes of the kernel's own user"
            else:
                d["process_limit"] = f"RLIMIT_NPROC (the grader user's processes + {self.limits.processes})"
        if root:
            d["cleanup"] = "every process of the kernel's user is killed after the run"
        elif cg_kind is not None:
            d["cleanup"] = "the kernel's process group, its descendants and everything in its cgroup are killed"
        elif level != "process":
            d["cleanup"] = "the kernel's process namespace ends with it"
        else:
            d["cleanup"] = ("the kernel's process group and descendants are killed; a process that "
                            "detached from both can outlive the run")
        if self.unavailable:
            d["unavailable"] = dict(self.unavailable)
        return d


class _KernelManager(AsyncKernelManager):  # type: ignore[misc]
    """jupyter_client's manager, which checks whether a killed kernel is gone every 10 ms, not 100."""

    async def _async_wait(self, pollinterval: float = 0.01) -> None:
        await super()._async_wait(min(pollinterval, 0.01))
