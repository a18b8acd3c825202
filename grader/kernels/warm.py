"""Kernels forked from a warm parent: the sandbox of a cold start, without its second of start-up.

A `WarmKernelLauncher` starts, on first use, one warm parent (see warm_parent.py): the kernel's
own interpreter with ipykernel and numpy imported and nothing of any submission. Every kernel
is then a fresh process forked from it, in a sandbox of its own built as the `sandbox` level
builds it (own mount, process, network, IPC, host-name and cgroup namespaces; system and Python
install read-only; only its folders writable; the grader and assignments absent), in its own
cgroup, with the rlimits, as the workspace's own unprivileged user. jupyter_client sees an
ordinary kernel: it starts, restarts, interrupts (by message) and kills it through a provisioner.

The warm path needs root (mounts, namespaces, the change of user) and a machine where the
`sandbox` level works; elsewhere, or when the first fork cannot build the sandbox, every
kernel is started cold as before, and `describe()` says which and why. One launcher (and its
warm parent) serves any number of submissions, one after another or at once; `close()` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from grader.kernels.ahead import KernelsAhead
from grader.kernels.cgroups import Cgroup
from grader.kernels.isolation import SANDBOX_ETC, SANDBOX_TMPFS_BYTES, grader_dirs
from grader.kernels.launch import LocalKernelLauncher
from grader.kernels.limits import Limits
from grader.kernels.users import is_root
from grader.kernels.workspace import Workspace

if TYPE_CHECKING:
    from grader.kernels.envs import KernelEnv

# Seconds the warm parent may take to import what it preloads, and a fork to become a kernel.
PARENT_START_TIMEOUT = 120.0
FORK_TIMEOUT = 60.0
# The warm parent's own environment: what must hold before numpy loads (one BLAS thread: a
# process with threads must not fork). Each kernel then gets the full kernel environment.
PARENT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
    # set, as for every kernel: without it a home lookup at import loads `pwd`, which a kernel
    # would then have loaded before any notebook code
    "HOME": "/nonexistent",
}
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The warm parent's program, run in the kernel's interpreter (see warm_parent.py).
PARENT_SOURCE = (Path(__file__).parent / "warm_parent.py").read_text(encoding="utf-8")


class WarmSetupError(RuntimeError):
    """The warm parent could not make a sandboxed kernel here (before any submission code ran)."""


class WarmParent:
    """A running warm parent process and its control socket."""

    def __init__(self, python: str):
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the parent and wait until it has imported what it preloads; WarmSetupError if not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
        try:
            env = {**PARENT_ENV, "PATH": f"{Path(self.python).parent}:{PARENT_ENV['PATH']}"}
            try:
                self.process = subprocess.Popen(
                    [self.python, "-I", "-c", PARENT_SOURCE, str(theirs.fileno())],
                    pass_fds=[theirs.fileno()], env=env, cwd="/", stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True,
                )
            except OSError as e:
                raise WarmSetupError(f"the warm parent did not start: {e.strerror or e}") from None
            theirs.close()
            ours.settimeout(PARENT_START_TIMEOUT)
            try:
                reply = json.loads(ours.recv(4096) or b"{}")
            except (OSError, ValueError):
                reply = {}
            if not reply.get("ready"):
                errors.seek(0)
                tail = errors.read().decode(errors="replace").strip().splitlines()
                why = reply.get("error") or (tail[-1] if tail else "it ended at start")
                self.close()
                raise WarmSetupError(f"the warm parent did not start: {why}"[:300])
            ours.settimeout(None)
            self._ctl = ours
        except BaseException:
            ours.close()
            self.close()
            raise
        finally:
            errors.close()

    @property
    def alive(self) -> bool:
        """Whether the parent still runs and can fork."""
        return self._ctl is not None and self.process is not None and self.process.poll() is None

    def fork(self) -> socket.socket:
        """A channel to a new keeper forked from the parent (it reads the request from it)."""
        if not self.alive:
            raise WarmSetupError("the warm parent is not running")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with self._lock:
                assert self._ctl is not None
                socket.send_fds(self._ctl, [b"k"], [theirs.fileno()])
        except OSError as e:
            ours.close()
            raise WarmSetupError(f"the warm parent did not take the request ({e.strerror or e})") from None
        finally:
            theirs.close()
        return ours

    def close(self) -> None:
        """End the parent (it leaves when its control socket closes; killed if it does not)."""
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        proc, self.process = self.process, None
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class ForkedProcess:
    """The keeper of a forked kernel, as jupyter_client uses a Popen: poll, wait, signals.

    `pid` is the keeper's (root, outside the sandbox; the kernel and the sandbox's init are its
    descendants): it lives until `release()`, so that pid is never another process's while the
    grader may still signal it. Signals go through the keeper; killing it kills the whole sandbox.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int, chan: socket.socket):
        self.pid = pid
        self.chan: socket.socket | None = chan
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The kernel's exit status once it ended (negative: killed by that signal), else None."""
        if self.returncode is None and self.chan is not None:
            try:
                data = self.chan.recv(4096)
            except BlockingIOError:
                return None
            except OSError:
                data = b""
            try:
                self.returncode = int(json.loads(data)["exit"]) if data else -signal.SIGKILL
            except (ValueError, KeyError, TypeError):
                self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the kernel ended; its exit status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("kernel", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Have the keeper signal the sandbox (SIGKILL, SIGTERM: it ends); nothing once it ended."""
        if self.poll() is not None or self.chan is None:
            return
        with contextlib.suppress(OSError):  # a keeper that is gone has nothing left to signal
            self.chan.send(json.dumps({"signal": int(signum)}).encode())

    def kill(self) -> None:
        """SIGKILL the sandbox."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """End the sandbox (its init takes no SIGTERM from outside: the keeper kills it)."""
        self.send_signal(signal.SIGTERM)

    def release(self) -> None:
        """Let the keeper go (after the grader's last signal); the kernel goes with it if still there."""
        if self.chan is not None:
            self.chan.close()
            self.chan = None
            if self.returncode is None:
                self.returncode = -signal.SIGKILL


class ForkedProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Starts the kernel by a fork of the warm parent instead of a new process."""

    warm: WarmParent | None = None
    request: dict[str, Any] | None = None
    _forked: list[ForkedProcess] | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Fork, send the request (and the kernel's stderr), wait until the sandbox is built."""
        assert self.warm is not None and self.request is not None
        env = {**(kwargs.get("env") or {}), "JPY_PARENT_PID": str(os.getpid())}  # as jupyter_client's Popen
        request = {**self.request, "argv": cmd[3:], "env": env, "cwd": str(kwargs.get("cwd") or "/")}
        stderr = kwargs.get("stderr")
        if getattr(stderr, "closed", False) and isinstance(getattr(stderr, "name", None), str):
            # a restart: the log of the first start was closed once that kernel had it
            log_fd = os.open(stderr.name, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        elif hasattr(stderr, "fileno"):
            log_fd = os.dup(stderr.fileno())
        else:
            log_fd = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        chan = self.warm.fork()
        try:
            socket.send_fds(chan, [json.dumps(request).encode()], [log_fd])
            chan.setblocking(False)
            loop = asyncio.get_running_loop()
            reply = await asyncio.wait_for(loop.sock_recv(chan, 65536), FORK_TIMEOUT)
            answer = json.loads(reply) if reply else {"error": "the warm parent's child ended"}
        except BaseException as e:
            chan.close()  # the keeper then kills what it started
            if isinstance(e, (OSError, ValueError, asyncio.TimeoutError)):
                raise WarmSetupError(f"a forked kernel did not start ({type(e).__name__})") from None
            raise
        finally:
            os.close(log_fd)  # the keeper has its own copy
        if not answer.get("ready"):
            chan.close()
            raise WarmSetupError(str(answer.get("error", "no answer"))[:300])
        process = ForkedProcess(int(answer["pid"]), chan)
        if self._forked is None:
            self._forked = []
        self._forked.append(process)
        self.process = process
        self.pid = process.pid
        self.pgid = None
        self.cwd = kwargs.get("cwd")
        return self.connection_info

    def release(self) -> None:
        """Let every keeper this provisioner started go (the kernel was stopped)."""
        for process in self._forked or []:
            process.release()
        self._forked = []


def sandbox_plan(launcher: LocalKernelLauncher, ws: Workspace) -> list[list[Any]]:
    """The mounts of one kernel's root, step for step those of the `sandbox` level's bubblewrap."""
    plan: list[list[Any]] = []
    for top in SYSTEM_DIRS:
        p = Path(top)
        if p.is_symlink():
            plan.append(["symlink", os.readlink(p), top])
        elif p.is_dir():
            plan.append(["bind", top, top, True])
    plan += [["bind", f, f, True] for f in SANDBOX_ETC if os.path.exists(f)]
    plan += [["proc", "/proc"], ["dev", "/dev"], ["tmpfs", "/dev/shm", SANDBOX_TMPFS_BYTES, 0o1777, False],
             ["readonly", "/dev"], ["tmpfs", "/tmp", SANDBOX_TMPFS_BYTES, 0o1777, False]]
    bound, hidden = _python_and_grader_dirs(launcher)
    plan += [["bind", d, d, True] for d in bound]  # after /tmp: a virtual environment may live there
    plan += [["tmpfs", d, 4096, 0o755, True] for d in hidden]
    plan += [["bind", str(ws.work), str(ws.work), False], ["bind", str(ws.runtime), str(ws.runtime), True]]
    if ws.kdirs is not None:
        plan.append(["bind", str(ws.kdirs.root), str(ws.kdirs.root), False])
        plan += [["bind", str(d), str(d), True] for d in ws.kdirs.readonly]
    return plan


def _python_and_grader_dirs(launcher: LocalKernelLauncher) -> tuple[list[str], list[str]]:
    """The kernel's Python folders and the grader's folders inside them, found once per launcher:
    finding the assignments the grader knows reads every installed package's metadata (tens of
    milliseconds), and a launcher's Python does not change."""
    cached = getattr(launcher, "_dirs_cache", None)
    if cached is None:
        bound = launcher._python_dirs()
        cached = (bound, grader_dirs(bound))
        launcher._dirs_cache = cached  # type: ignore[attr-defined]
    return cached


class WarmKernelLauncher(LocalKernelLauncher):
    """A kernel launcher whose kernels are forked from one warm parent (cold where it cannot be)."""

    def __init__(self, limits: Limits | None = None, python: str | None = None,
                 isolation: str | None = None, cgroup: bool = True):
        super().__init__(limits=limits, python=python, isolation=isolation, cgroup=cgroup)
        self.parent: WarmParent | None = None
        self.warm_unavailable = self._why_cold()
        self._parent_lock = threading.Lock()
        self._forked = 0  # kernels started by a fork
        self._cold = 0  # ... and cold
        # One warm parent per kernel environment: grading binds each assignment's environment
        # (`with_env`), and every submission of that environment forks from the same parent.
        self._bound: dict[str, WarmKernelLauncher] = {}
        # Kernels kept started ahead of need (see ahead.py): none unless asked for (`ahead`).
        self.ahead = 0
        self._ahead: KernelsAhead | None = None

    def _why_cold(self) -> str:
        if not is_root():
            return "the grader does not run as root (needed for the sandbox, cgroup and user of a fork)"
        if self.level != "sandbox":
            return f"the isolation level is {self.level}, not sandbox"
        return ""

    @property
    def warm(self) -> bool:
        """Whether kernels are (still) forked from a warm parent."""
        return not self.warm_unavailable

    def ensure_parent(self) -> WarmParent:
        """The running warm parent, started if need be (blocks; WarmSetupError if it cannot start)."""
        with self._parent_lock:
            if self.parent is None or not self.parent.alive:
                if self.parent is not None:
                    self.parent.close()
                parent = WarmParent(self.python)
                parent.start()
                self.parent = parent
            return self.parent

    async def start(self, workspace: Workspace) -> AsyncKernelManager:
        """A kernel forked from the warm parent; a cold one if the warm path cannot be had here."""
        ahead = self._ahead.started(workspace) if self._ahead is not None else None
        if ahead is not None:  # its kernel was started before the submission came
            try:
                km = await ahead
                self._forked += 1
                return km
            except Exception:  # (e.g. the warm path is gone): started now instead, which says why
                pass
        if self.warm:
            try:
                km = await self._fork(workspace)
                self._forked += 1
                return km
            except WarmSetupError as e:  # the machine's doing, before any submission code ran
                self.warm_unavailable = str(e)
                self.close()
        km = await super().start(workspace)
        self._cold += 1
        return km

    async def _fork(self, workspace: Workspace) -> AsyncKernelManager:
        await asyncio.to_thread(self.ensure_parent)  # seconds, once: not on the event loop
        return await super().start(workspace)

    def take_workspace(self) -> Workspace | None:
        """An empty workspace whose kernel is already started (or starting), if kernels are kept
        ahead (`ahead` > 0, forked only); the next one then starts (call from the event loop)."""
        kept = self._kernels_ahead()
        return kept.take() if kept is not None else None

    def start_ahead(self) -> None:
        """Start the kernels kept ahead now, before the first submission asks (call from the event loop)."""
        kept = self._kernels_ahead()
        if kept is not None:
            kept.fill()

    def _kernels_ahead(self) -> KernelsAhead | None:
        """The kernels kept ahead (made on first use), or None where none are kept."""
        if self.ahead <= 0 or not self.warm:
            return None
        if self._ahead is None:
            self._ahead = KernelsAhead(self._fork, self.ahead)
        return self._ahead

    async def stop_ahead(self) -> None:
        """Stop the kernels started ahead that no submission took (this launcher's and its bound ones')."""
        pools = [self._ahead, *(b._ahead for b in list(self._bound.values()))]
        self._ahead = None
        for b in list(self._bound.values()):
            b._ahead = None
        for pool in pools:
            if pool is not None:
                await pool.close()

    @property
    def forked(self) -> int:
        """Kernels started by a fork, by this launcher and those it bound to environments."""
        return self._forked + sum(b.forked for b in list(self._bound.values()))

    @property
    def cold(self) -> int:
        """Kernels started cold, by this launcher and those it bound to environments."""
        return self._cold + sum(b.cold for b in list(self._bound.values()))

    def _forked_argv(self) -> list[str]:
        return [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                "--HistoryManager.enabled=False", "--IPKernelApp.quiet=True",
                "--IPKernelApp.parent_handle=0"]

    def argv(self, workspace: Workspace | None = None, cgroup: Cgroup | None = None) -> list[str]:
        """The kernel command; forked, only ipykernel's part is used (as the forked kernel's argv)."""
        return self._forked_argv() if self.warm else super().argv(workspace, cgroup)

    def provisioner_for(self, km: AsyncKernelManager, workspace: Workspace,
                        cgroup: Cgroup | None) -> Any:
        """The forking provisioner, with this kernel's request (None when starting cold)."""
        if km.kernel_spec.argv != self._forked_argv():  # a cold start's command, wrapped in its fences
            return None
        # From here the command is ipykernel alone: never run as such, only forked into the sandbox.
        parent = self.parent
        if parent is None or not parent.alive:
            raise WarmSetupError("the warm parent is not running")
        uid = workspace.uid
        if uid is None:
            raise WarmSetupError("the workspace has no kernel user")
        # The workspace's user is fresh, and every process of an earlier kernel of it was killed
        # when that kernel stopped: none to allow for (no scan of every process on the machine).
        tasks = self.limits.processes if cgroup is not None else 0
        km.kernel_id = km.kernel_id or str(uuid.uuid4())
        provisioner = ForkedProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km)
        provisioner.warm = parent
        provisioner.request = {
            "uid": uid,
            "cgroups": cgroup.procs_files() if cgroup is not None else [],
            "rlimits": self.limits.rlimits(tasks),
            "connection_file": str(workspace.connection_file),
            "plan": sandbox_plan(self, workspace),
            "nice": workspace.nice,
        }
        return provisioner

    def with_env(self, env: KernelEnv) -> WarmKernelLauncher:
        """The launcher forking from a warm parent of `env`'s interpreter, the same one each time."""
        if self.env == env:
            return self
        with self._parent_lock:
            bound = self._bound.get(env.key)
            if bound is None:
                bound = WarmKernelLauncher(limits=self.limits, python=env.python,
                                           isolation=self.requested, cgroup=self.use_cgroup)
                bound.env = env
                bound.ahead = self.ahead
                self._bound[env.key] = bound
            return bound

    def close(self) -> None:
        """End the warm parents (kernels already forked are stopped by their own sessions)."""
        with self._parent_lock:
            bound, self._bound = list(self._bound.values()), {}
            if self.parent is not None:
                self.parent.close()
                self.parent = None
        for launcher in bound:
            launcher.close()

    def __enter__(self) -> WarmKernelLauncher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, object]:
        """What the kernels get; as the cold launcher's, with how they start."""
        d = super().describe()
        if self.warm:
            d["start"] = ("forked from a warm parent (ipykernel and numpy imported, nothing of any "
                          "submission); every kernel a fresh process, random generators reseeded, "
                          "Python's hash seed the parent's")
            uid = f"uid {self.last_uid}" if self.last_uid is not None else "a fresh uid per submission"
            d["user"] = (f"an unprivileged user of its own ({uid}): no groups, no capabilities, no "
                         "set-user-ID programs; it cannot signal the grader or write the grader's files")
        else:
            d["start"] = f"a new interpreter per kernel (cold: {self.warm_unavailable})"
        return d
