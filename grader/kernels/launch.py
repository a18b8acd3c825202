"""Starting and stopping the kernel that runs a submission; the only module that knows how
(but for warm.py, which forks kernels from a warm parent into the same fences).

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

At every level: a minimal environment, a private working folder, rlimits (address space,
file size, open files, no core dumps, processes where the kernel enforces them), and, where
a writable cgroup exists, a cgroup with a memory and a process limit for the kernel and all
its children. `describe()` says which of these a run actually got.

When the grader runs as root, the kernel never is: at every level it runs as a fresh
unprivileged user of its own (no groups, no new privileges), which cannot leave its cgroup,
signal the grader or write the grader's files, and every process of that user is killed
after the run (`Workspace.hand_to`, `kill_user`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import psutil
import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager

from grader.cachefiles import PACKAGE_DIR, hash_package_files, write_atomic
from grader.errors import GraderError
from grader.kernels import leftovers
from grader.options import CACHE_DIR_VARIABLE, ISOLATION_LEVELS, cache_dir

if TYPE_CHECKING:
    from grader.kernels.envs import KernelEnv

# Files beside a notebook that its code may import or read (`import my_answers`, data files).
SIBLING_SUFFIXES = {".py", ".csv", ".txt", ".npy", ".npz", ".json", ".pkl", ".dat", ".tsv"}
SIBLING_MAX_BYTES = 20 * 1024 * 1024
# Environment variables worth keeping: they change numeric results or where things run, not secrets.
PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ")
# No single kernel message may be larger: a cell printing 1 GB cannot make the grader hold it.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# ... nor may more than a few wait in the grader's queues: a flood waits in the kernel instead
# (or is dropped there), so the grader holds at most this many messages, however fast they come.
MAX_QUEUED_MESSAGES = 8
# The kernel's user inside the sandbox; nothing on the host is owned by it.
SANDBOX_UID = 65534
# When the grader runs as root, each workspace's kernels run as a user of their own, drawn from
# this range (no account has such a uid): it owns nothing of the grader's and can signal nothing
# but its own processes, and every process it starts is found by its uid and killed at the end.
KERNEL_UID_BASE = 0x5A000000
KERNEL_UID_SPAN = 1 << 24
# Size of each writable tmpfs of the sandbox (/tmp, /dev/shm); the rest of its tree is read-only.
SANDBOX_TMPFS_BYTES = 64 * 2**20
# /etc files a Python kernel needs (dynamic loader, user names, time zone); nothing else of /etc.
SANDBOX_ETC = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
    "/etc/nsswitch.conf", "/etc/localtime", "/etc/mime.types", "/etc/alternatives",
)


@dataclass(frozen=True)
class Limits:
    """Resource limits for one kernel and its children."""

    memory_mb: int = 2048
    processes: int = 256
    file_size_mb: int = 256
    open_files: int = 1024

    def rlimits(self, tasks_now: int | None = None) -> dict[str, int]:
        """As `resource` module limits (`tasks_now`: processes and threads the kernel's user already runs)."""
        mb = 1024 * 1024
        return {
            # Per process: a single huge allocation fails with MemoryError instead of a kill.
            "RLIMIT_AS": self.memory_mb * mb,
            # NPROC counts every process and thread of the user, so allow for those already running.
            "RLIMIT_NPROC": (_user_tasks() if tasks_now is None else tasks_now) + self.processes,
            "RLIMIT_FSIZE": self.file_size_mb * mb,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_CORE": 0,
        }


def _user_tasks(uid: int | None = None) -> int:
    """Processes and threads a user runs now (this user by default)."""
    uid = os.getuid() if uid is None else uid
    total = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        try:
            if p.info["uids"] and p.info["uids"].real == uid:
                total += p.info["num_threads"] or 1
        except (psutil.Error, TypeError):
            continue
    return total


def _uids_in_use() -> set[int]:
    """Every uid that runs a process now (real, effective or saved)."""
    return {u for _, uids, _ in _process_uids() for u in uids}


def _process_uids() -> list[tuple[int, tuple[int, ...], bool]]:
    """(pid, (real, effective, saved uid), zombie) of every process, read from /proc directly:
    the grader scans them several times per kernel, and psutil's objects cost several times more."""
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/status", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(fd, 4096)
            finally:
                os.close(fd)
        except OSError:  # it ended meanwhile
            continue
        at, state = data.find(b"\nUid:"), data.find(b"\nState:")
        if at < 0:
            continue
        try:
            uids = tuple(int(u) for u in data[at + 5:data.find(b"\n", at + 1)].split()[:3])
        except ValueError:
            continue
        out.append((int(name), uids, data[state + 7:state + 12].strip()[:1] == b"Z"))
    return out


def fresh_kernel_uid() -> int:
    """A uid no account has and no process runs as, for the kernels of one workspace."""
    import grp
    import pwd

    taken = _uids_in_use() | {u.pw_uid for u in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    while True:
        uid = KERNEL_UID_BASE + secrets.randbelow(KERNEL_UID_SPAN)
        if uid not in taken:
            return uid


def _user_procs(uid: int) -> list[psutil.Process]:
    """Live (not zombie) processes with `uid` as their real, effective or saved uid."""
    out = []
    for pid, uids, zombie in _process_uids():
        if uid in uids and not zombie:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)  # from here psutil checks the pid is not reused ...
                if uid in p.uids():  # ... and until here it may have been
                    out.append(p)
    return out


def kill_user(uid: int) -> bool:
    """SIGKILL every process of a kernel user (root only); whether none is left.

    A process of that user does it, with kill(-1): the kernel signals every process the user
    may signal at once, wherever it is (other sessions, other PID namespaces, reparented to
    init), and a process about to fork with a pending SIGKILL does not fork. Then root kills
    what is still found by its uid.
    """
    if uid < KERNEL_UID_BASE or not _is_root():  # never the grader's own user
        return False
    for _ in range(20):
        procs = _user_procs(uid)
        if not procs:
            return True
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["/bin/sh", "-c", "kill -9 -1"], user=uid, group=uid, extra_groups=[],
                           env={}, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()  # psutil checks the pid was not reused
        time.sleep(0.02)
    return not _user_procs(uid)


# Folders every user may write to: what a kernel's user left there goes with its workspace.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def remove_user_files(uid: int) -> None:
    """Remove what a kernel user (root only) left at the top of the shared writable folders."""
    if uid < KERNEL_UID_BASE or not _is_root():
        return
    for top in SHARED_WRITABLE:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for e in entries:
            with contextlib.suppress(OSError):
                if e.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if e.is_dir(follow_symlinks=False):
                    remove_tree(Path(e.path))
                else:
                    os.unlink(e.path)


# Runs as `python -c` between the grader and the kernel, before any student code: joins the
# cgroups, applies the rlimits, and, when the grader is root, hands the connection file to the
# kernel's user, makes the folders that user needs reachable (in a mount namespace of its own,
# when a folder above them is closed to others: a tmpfs over that folder holding only them), and
# becomes that user (no groups, no new privileges); then asks to die with its parent and becomes
# the kernel (or the wrapper that starts it). At the `namespace` level as root it runs twice:
# outside `unshare` (limits) and inside it (the change of user, which unshare itself needs root
# for).
_LIMITED_EXEC = """
import os, resource, sys, json
cfg = json.loads(sys.argv[1])
def die(code, why):
    sys.stderr.write(f"grader: {why}\\n")
    sys.stderr.flush()
    os._exit(code)
def prctl(*args):
    import ctypes
    return ctypes.CDLL(None, use_errno=True).prctl(*[ctypes.c_ulong(a) for a in args])
for path in cfg.get("cgroups", []):
    try:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    except OSError:
        die(121, "cannot join the kernel's cgroup")  # a limit we promised is not in force: refuse to run
for name, value in cfg.get("rlimits", {}).items():
    try:
        soft, hard = resource.getrlimit(getattr(resource, name))
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError, AttributeError):
        pass
uid = cfg.get("uid")
try:
    for path in cfg.get("give", []):  # the connection file: the kernel's user may read it, no one else
        os.chown(path, cfg["owner"], cfg["owner"])
    if cfg.get("reach"):  # folders the kernel's user must reach, behind folders it may not search
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        groups = {}
        for p in cfg["reach"]:
            parts = p.strip("/").split("/")
            for i in range(1, len(parts)):
                a = "/" + "/".join(parts[:i])
                if not os.stat(a).st_mode & 0o001:
                    groups.setdefault(a, []).append(p)
                    break
        if groups:
            cwd = os.getcwd()
            if libc.unshare(0x20000) or libc.mount(None, b"/", None, 0x4000 | 0x40000, None):  # NEWNS; REC|PRIVATE
                die(123, "cannot make a mount namespace for the kernel's user")
            for a, paths in groups.items():
                fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in paths}
                if libc.mount(b"tmpfs", a.encode(), b"tmpfs", 2 | 4 | 8, b"mode=0755,size=1m"):  # NOSUID|NODEV|NOEXEC
                    die(123, f"cannot open {a} to the kernel's user")
                for p, fd in fds.items():
                    os.makedirs(p, 0o755, exist_ok=True)
                    if libc.mount(f"/proc/self/fd/{fd}".encode(), p.encode(), None, 0x1000 | 0x4000, None):  # BIND|REC
                        die(123, f"cannot open {p} to the kernel's user")
                    os.close(fd)
            try:
                os.chdir(cwd)
            except OSError:  # the grader's own folder, hidden behind the tmpfs: not the kernel's business
                os.chdir("/")
    if uid is not None:  # no groups, no root, no way back, no set-user-id programs
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        if prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
            die(122, "cannot forbid new privileges")
        try:
            os.setuid(0)
        except OSError:
            pass
        else:
            die(122, "could become root again")
        if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid or os.getgroups():
            die(122, "the change of user did not hold")
except OSError as e:
    die(122, f"cannot run the kernel as an unprivileged user ({e.strerror})")
if cfg.get("pdeathsig"):  # after the change of user, which clears it
    try:
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:
        pass
os.execvp(sys.argv[2], sys.argv[2:])
"""


# ---------------------------------------------------------------- what a run leaves behind

_live_lock = threading.Lock()
_live_roots: set[Path] = set()
_live_kernels: dict[int, int] = {}  # pid -> process group of every kernel not yet stopped
_live_cgroups: dict[int, Cgroup] = {}
_live_uids: set[int] = set()  # kernel users whose processes are killed at exit


def _track(kind: dict[Any, Any] | set[Any], key: Any, value: Any = None, remove: bool = False) -> None:
    with _live_lock:
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
    with _live_lock:
        kernels = dict(_live_kernels)
        cgroups = list(_live_cgroups.values())
        roots = list(_live_roots)
        uids = list(_live_uids)
        _live_kernels.clear()
        _live_cgroups.clear()
        _live_roots.clear()
        _live_uids.clear()
    for pid, pgid in kernels.items():
        _kill_tree(pid, pgid)
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


def grader_dirs(visible: list[str]) -> list[str]:
    """Folders of the grader inside `visible` ones: its package, the shared reference package and
    every assignment folder it knows (references, hidden generators). A sandboxed kernel sees an
    empty folder in their place, even when they are installed in the environment it runs from."""
    from grader.assignment.spec import (  # (spec does not import kernel)
        PACKAGE_ASSIGNMENTS,
        known_assignments,
    )

    package = PACKAGE_DIR
    cands = {package, package.parent / "reference", PACKAGE_ASSIGNMENTS.resolve(),
             *(f.resolve() for f in known_assignments().values())}
    roots = [os.path.realpath(v).rstrip("/") + "/" for v in visible]
    inside = sorted(str(c) for c in cands if c.is_dir() and any(str(c).startswith(r) for r in roots))
    return [d for d in inside if not any(d != o and d.startswith(o + "/") for o in inside)]


# ---------------------------------------------------------------- workspace


@dataclass
class Workspace:
    """The folders of one run: `work` (the notebook's folder), `runtime` (the connection file)
    and, for each kernel started, its own `kdirs` (start-up folder, configuration, IPC sockets).

    When the grader runs as root, `hand_to` gives `work` and the writable parts of `kdirs` to
    the kernel's user (`uid`); the root folder and `runtime` stay the grader's (the kernel may
    only pass through them and read its connection file), so nothing the grader later opens
    there can have been planted by the kernel.
    """

    root: Path
    work: Path = field(init=False)
    runtime: Path = field(init=False)
    uid: int | None = field(default=None, init=False)
    outside: list[Path] = field(default_factory=list, init=False)  # kernels' folders kept elsewhere
    # The current kernel's own folders (see new_kernel_dirs): fresh for every kernel started.
    kdirs: KernelDirs | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        _track(_live_roots, self.root)
        self.work = self.root / "work"
        self.runtime = self.root / "rt"
        self.work.mkdir()
        self.runtime.mkdir()

    def new_kernel_dirs(self) -> KernelDirs:
        """Fresh folders for the next kernel; what an earlier kernel wrote anywhere never reaches it.

        They live in the workspace, unless its path is too long for the kernel's sockets (a Unix
        socket's path holds at most 107 bytes): then in a folder of their own under /tmp.
        """
        base = self.root
        if len(os.fsencode(str(base))) > MAX_SOCKET_BASE:
            base = Path(tempfile.mkdtemp(prefix=leftovers.prefix("gk-"), dir="/tmp"))
            os.chmod(base, 0o711)
            self.outside.append(base)
            _track(_live_roots, base)
        self.kdirs = KernelDirs.make(base / ("k" + secrets.token_hex(3)))
        return self.kdirs

    @property
    def connection_file(self) -> Path:
        """The kernel's connection file (the grader writes it; only the kernel's user may read it)."""
        return self.runtime / "kernel.json"

    def hand_to(self, uid: int) -> None:
        """Let the kernel's user `uid` use the workspace: `work`, and the current kernel's own folder
        with the top of its IPython folder; its configuration folders stay the grader's, read-only."""
        if self.uid is None:
            self.uid = uid
            _track(_live_uids, uid)
        os.chmod(self.root, 0o711)
        os.chmod(self.runtime, 0o711)
        os.chmod(self.work, 0o700)
        for d, dirs, files in os.walk(self.work):  # not following links
            for name in (d, *(os.path.join(d, n) for n in dirs + files)):
                with contextlib.suppress(OSError):
                    os.lchown(name, self.uid, self.uid)
        if self.kdirs is not None:
            for d in (self.kdirs.root, self.kdirs.ipython, self.kdirs.root / "mpl"):
                os.lchown(d, self.uid, self.uid)

    def cleanup(self) -> None:
        """Remove everything the run wrote (after killing every process of its kernels' user)."""
        if self.uid is not None:
            kill_user(self.uid)
            remove_user_files(self.uid)
            _track(_live_uids, self.uid, remove=True)
        for folder in [*self.outside, self.root]:
            remove_tree(folder)
            _track(_live_roots, folder, remove=True)


# Longest workspace path whose kernels' sockets (<workspace>/kXXXXXX/k-N) still fit in 107 bytes.
MAX_SOCKET_BASE = 90


def remove_tree(root: Path) -> None:
    """Remove a folder the kernel wrote into, however deep, long-named or read-only it made it."""
    with contextlib.suppress(Exception):  # shutil recurses: thousands of nested folders exhaust the stack
        shutil.rmtree(root, ignore_errors=True)
    if not os.path.lexists(root):
        return
    # rm walks without recursion or path-length limits; chmod first for folders made read-only
    for cmd in (["chmod", "-R", "u+rwx", str(root)], ["rm", "-rf", "--one-file-system", str(root)]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, check=False)

@dataclass(frozen=True)
class KernelDirs:
    """One kernel's start-up folders, prepared by the grader before it starts.

    `cwd` (empty) is where the kernel starts, so neither IPython's config search of the
    current folder nor Python's `sys.path[0]` sees the submission; `ipython`, `jupyter` and
    `xdg` hold the (empty) configuration, profile and start-up folders; all of these are
    read-only (`readonly`), but for the top of `ipython`, which IPython wants writable. The
    folder itself holds the kernel's IPC sockets (a short path: a Unix socket's path is at
    most 107 bytes) and matplotlib's cache. The name is random and made anew for every
    kernel, first or revived.
    """

    root: Path

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def ipython(self) -> Path:
        return self.root / "ipython"

    @property
    def sockets(self) -> Path:
        return self.root

    @property
    def readonly(self) -> list[Path]:
        """What the kernel may not change (mounted read-only in the sandbox)."""
        r = self.root
        return [self.cwd, self.ipython / "profile_default", r / "jupyter", r / "xdg"]

    @classmethod
    def make(cls, root: Path) -> KernelDirs:
        """Create the folders (failing if the name exists) and make the configuration read-only."""
        root.mkdir(mode=0o755)  # fails if it exists: nothing planted in advance
        d = cls(root)
        profile = d.ipython / "profile_default"
        fixed = [d.cwd, d.ipython, profile, *(profile / n for n in ("startup", "log", "pid", "security", "db")),
                 root / "jupyter", root / "jupyter" / "config", root / "jupyter" / "data",
                 root / "xdg", root / "xdg" / "config", root / "xdg" / "cache"]
        for f in fixed:
            f.mkdir()
        (root / "mpl").mkdir()
        for f in reversed(fixed):  # read-only, innermost first
            if f != d.ipython:  # IPython insists on a writable top folder (or makes one in TMPDIR)
                f.chmod(0o555)
        return d

    def env(self) -> dict[str, str]:
        """Where IPython, Jupyter and XDG look for configuration: here, never a writable folder."""
        r = self.root
        return {
            "IPYTHONDIR": str(self.ipython),
            "JUPYTER_CONFIG_DIR": str(r / "jupyter" / "config"),
            "JUPYTER_DATA_DIR": str(r / "jupyter" / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.sockets),
            "JUPYTER_CONFIG_PATH": str(r / "jupyter" / "config"),
            "JUPYTER_PATH": str(r / "jupyter" / "data"),
            "XDG_CONFIG_HOME": str(r / "xdg" / "config"),
            "XDG_CACHE_HOME": str(r / "xdg" / "cache"),
            "MPLCONFIGDIR": str(r / "mpl"),
            # no folder of the submission (nor the cwd) on sys.path at start (Python >= 3.11;
            # before that the cwd, empty and read-only, stands first)
            "PYTHONSAFEPATH": "1",
        }


def make_workspace(notebook: Path, extra_files: list[Path] | None = None,
                   into: Workspace | None = None) -> Workspace:
    """A fresh folder holding the notebook, the files beside it that code may use, and shipped files.

    `into`: a workspace made earlier, still empty, whose kernel (started ahead, no code run in it
    yet) may already own its folder: the files go there, and to that kernel's user.
    """
    ws = into or new_workspace()
    try:
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
        if ws.uid is not None:
            ws.hand_to(ws.uid)
    except BaseException:
        ws.cleanup()
        raise
    return ws


def new_workspace() -> Workspace:
    """A fresh, empty workspace."""
    leftovers.sweep()  # what killed graders left (once per process)
    return Workspace(Path(tempfile.mkdtemp(prefix=leftovers.prefix("grader-"))))


# ---------------------------------------------------------------- cgroups


class Cgroup:
    """A cgroup (v1 or v2) holding one kernel and its children, with memory and process limits."""

    def __init__(self, version: int, dirs: dict[str, Path]):
        self.version = version
        self.dirs = dirs  # controller -> folder (v2: the same folder for both)

    @classmethod
    def create(cls, limits: Limits) -> tuple[Cgroup | None, str]:
        """A new cgroup under the grader's own, or (None, why not)."""
        name = leftovers.prefix("grader-") + secrets.token_hex(6)  # (its owner: see leftovers.py)
        try:
            own = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None, "no /proc/self/cgroup"
        fs = Path("/sys/fs/cgroup")
        v1 = {}
        v2_path = None
        for line in own:
            parts = line.split(":", 2)
            if len(parts) != 3:
                continue
            _, ctrls, path = parts
            for c in ctrls.split(","):
                if c in ("memory", "pids") and (fs / c).is_dir():
                    v1[c] = fs / c / path.lstrip("/")
            if ctrls == "" and (fs / "cgroup.controllers").exists():
                v2_path = fs / path.lstrip("/")
        for base in [*v1.values(), *([v2_path] if v2_path else [])]:
            leftovers.sweep_cgroups(base)
        if "memory" in v1 and "pids" in v1:
            dirs = {c: base / name for c, base in v1.items()}
            cg = cls(1, dirs)
            try:
                for d in dirs.values():
                    d.mkdir()
                mem = dirs["memory"]
                (mem / "memory.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    with contextlib.suppress(OSError):  # no swap accounting: the RAM limit stands
                        (mem / "memory.memsw.limit_in_bytes").write_text(str(limits.memory_mb * 2**20))
                (dirs["pids"] / "pids.max").write_text(str(limits.processes))
            except OSError as e:
                cg.destroy()
                return None, f"cgroup v1 not writable ({e.strerror or e})"
            return cg, ""
        if v2_path is not None:
            try:
                enabled = (v2_path / "cgroup.subtree_control").read_text().split()
                if not {"memory", "pids"} <= set(enabled):
                    (v2_path / "cgroup.subtree_control").write_text("+memory +pids")
                d = v2_path / name
                d.mkdir()
            except OSError as e:
                return None, f"cgroup v2 not delegated to the grader ({e.strerror or e})"
            cg = cls(2, {"memory": d, "pids": d})
            try:
                (d / "memory.max").write_text(str(limits.memory_mb * 2**20))
                if (d / "memory.swap.max").exists():
                    with contextlib.suppress(OSError):
                        (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(limits.processes))
            except OSError as e:
                cg.destroy()
                return None, f"cgroup v2 limits not writable ({e.strerror or e})"
            return cg, ""
        return None, "no memory and pids cgroup controllers"

    def procs_files(self) -> list[str]:
        """Where a process writes its pid to join."""
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def pids(self) -> set[int]:
        """Every process in the cgroup."""
        out: set[int] = set()
        for f in self.procs_files():
            with contextlib.suppress(OSError, ValueError):
                out |= {int(x) for x in Path(f).read_text().split()}
        return out

    def oom_kills(self) -> int:
        """How many processes the memory limit killed."""
        mem = self.dirs["memory"]
        f = mem / ("memory.oom_control" if self.version == 1 else "memory.events")
        return _counter(f, "oom_kill")

    def hit_memory_limit(self) -> bool:
        """Whether memory use ever reached the limit."""
        mem = self.dirs["memory"]
        if self.version == 1:
            return _int_file(mem / "memory.failcnt") > 0 or self.oom_kills() > 0
        return _counter(mem / "memory.events", "max") > 0 or self.oom_kills() > 0

    def hit_process_limit(self) -> bool:
        """Whether a fork was refused by the process limit."""
        return _counter(self.dirs["pids"] / "pids.events", "max") > 0

    def kill_all(self) -> None:
        """SIGKILL everything inside, including processes that escaped the kernel's process group."""
        kill_file = self.dirs["pids"] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def destroy(self) -> None:
        """Kill what is inside and remove the cgroup."""
        self.kill_all()
        for d in self.dirs.values():
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        _track(_live_cgroups, id(self), remove=True)

    def describe(self) -> str:
        """For the report."""
        return f"cgroup v{self.version}"


def _int_file(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0


# ---------------------------------------------------------------- launchers


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


# ---------------------------------------------------------------- the isolation level, cached on disk
# Probing a level (starting a wrapped Python) costs a noticeable part of a grading, so a level
# found to work is remembered on disk, keyed by everything the probe's outcome depends on. Only
# "this level works" is remembered: stronger levels are still probed every time, so the cache
# can never make a run pick a weaker level than a fresh probe would. A remembered level that
# then fails to start a kernel is forgotten and the levels are probed again (`recheck`).

LEVEL_CACHE_ENV = CACHE_DIR_VARIABLE
_LEVEL_CACHE_VERSION = 1
_LEVEL_CACHE_MAX = 32  # entries kept (one per Python, wrapper and system the grader has run with)
_SYSTEM_FILES = (  # what makes namespaces work or not, beside the wrapper programs themselves
    "/proc/sys/kernel/random/boot_id", "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    "/proc/sys/kernel/unprivileged_bpf_disabled",
)


def level_cache_file() -> Path | None:
    """Where levels known to work are remembered ($NNGRADER_CACHE_DIR, else the user's cache folder)."""
    base = cache_dir()
    return None if base is None else base / "isolation.json"


def _stat_key(path: str | None) -> list[Any]:
    if not path:
        return [path]
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode, st.st_uid]


def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(200).strip()
    except OSError:
        return None


@functools.cache
def _system_key() -> list[Any]:
    """This machine, boot, container and kernel settings (namespaces, sysctls), as the probe sees them."""
    ns = []
    for name in ("user", "mnt", "pid", "net", "cgroup"):
        try:
            ns.append(os.stat(f"/proc/self/ns/{name}").st_ino)
        except OSError:
            ns.append(None)
    spec = importlib.util.find_spec("ipykernel")
    return [os.uname().release, os.uname().version, [_read_small(f) for f in _SYSTEM_FILES], ns,
            _stat_key(spec.origin if spec else None),
            _kernel_code_digest()]  # how this grader wraps kernels


def _kernel_code_digest() -> str:
    h = hashlib.sha256()
    hash_package_files(h, ("kernels/*.py",))
    return h.hexdigest()


def _load_levels(path: Path) -> dict[str, str]:
    """The remembered levels (key -> level); anything unreadable or malformed is no memory at all."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _LEVEL_CACHE_VERSION:
        return {}
    works = data.get("works")
    if not isinstance(works, dict):
        return {}
    return {k: v for k, v in works.items() if isinstance(k, str) and v in ISOLATION_LEVELS}


def _save_levels(path: Path, works: dict[str, str]) -> None:
    """Write the remembered levels atomically (concurrent graders each leave a whole file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps({"version": _LEVEL_CACHE_VERSION, "works": works}).encode("utf-8")
        write_atomic(path, data, ".isolation.")
    except OSError:  # a read-only or full disk: levels are probed each time, as without a cache
        pass


@functools.cache
def _cgroup_support() -> tuple[str | None, str]:
    """Whether this process can make kernel cgroups: ("cgroup vN", "") or (None, why not)."""
    cg, why = Cgroup.create(Limits())
    if cg is None:
        return None, why
    cg.destroy()
    return cg.describe(), ""


def _is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _probe_uid() -> int:
    """The kernel user of the runs that check whether a level works (one per grader process)."""
    return fresh_kernel_uid()


_DIRS_SOURCE = """
import json, sys
print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  *(p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")))]))
"""


@functools.cache
def interpreter_dirs(python: str) -> tuple[str, ...]:
    """An interpreter's prefixes and its site-packages outside them (as that interpreter says)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable) and Path(python).parent == Path(sys.executable).parent:
        return (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                *(p for p in sys.path if p and p.rstrip("/").endswith(("site-packages", "dist-packages"))))
    try:  # -I: neither the grader's PYTHONPATH nor the user's site folder
        r = subprocess.run([python, "-I", "-c", _DIRS_SOURCE], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        return tuple(json.loads(r.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise GraderError(f"the kernel's Python {python} does not run ({e})") from None


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
        remembered = self._remembered() if use_cache else {}
        for level in order:
            if level == "process" and not _is_root():
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
        facts = [level, _is_root(), os.geteuid(), _stat_key(self.python), _stat_key(os.path.realpath(self.python)),
                 [_stat_key(d) for d in self._python_dirs()], wrapper, _stat_key(wrapper[0] if wrapper else None),
                 _system_key()]
        return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()

    def _remembered(self) -> dict[str, str]:
        path = level_cache_file()
        return _load_levels(path) if path is not None else {}

    def _remember(self, level: str) -> None:
        path = level_cache_file()
        if path is None:
            return
        works = self._remembered()
        works.pop(self._level_key(level), None)
        works[self._level_key(level)] = level  # newest last: the oldest go first
        _save_levels(path, dict(list(works.items())[-_LEVEL_CACHE_MAX:]))

    def _forget(self, level: str) -> None:
        path = level_cache_file()
        if path is None:
            return
        works = self._remembered()
        if works.pop(self._level_key(level), None) is not None:
            _save_levels(path, works)

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
            if not _is_root():
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
        if _is_root():
            uid = workspace.uid if workspace is not None and workspace.uid is not None else _probe_uid()
        tasks = 0 if probe else _user_tasks(uid)
        if uid is not None and cgroup is not None:
            tasks += self.limits.processes  # the cgroup's limit binds first (and tells it was hit)
        cfg: dict[str, Any] = {
            "rlimits": {} if probe else self.limits.rlimits(tasks),
            "cgroups": cgroup.procs_files() if cgroup else [],
            "pdeathsig": True,
        }
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
        args = [
            "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--hostname", "grader", "--die-with-parent", "--cap-drop", "ALL",
        ]
        for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            p = Path(top)
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), top]
            elif p.is_dir():
                args += ["--ro-bind", top, top]
        for f in SANDBOX_ETC:
            if os.path.exists(f):
                args += ["--ro-bind", f, f]
        # Every writable tmpfs has a size: /dev is read-only once made (its devices still work), and
        # /dev/shm and /tmp are small; the sandbox's root is made read-only last.
        args += ["--proc", "/proc", "--dev", "/dev", "--size", str(SANDBOX_TMPFS_BYTES), "--tmpfs", "/dev/shm",
                 "--remount-ro", "/dev"]
        args += ["--size", str(SANDBOX_TMPFS_BYTES), "--tmpfs", "/tmp"]
        bound = self._python_dirs()
        for src in bound:  # after /tmp: a virtual environment may live there
            args += ["--ro-bind", src, src]
        for hidden in grader_dirs(bound):  # the grader itself, where it is installed in that environment
            args += ["--size", str(4096), "--tmpfs", hidden, "--remount-ro", hidden]
        if ws is not None:
            # its connection file, which only the grader writes, in a folder the kernel cannot change
            args += ["--bind", str(ws.work), str(ws.work), "--ro-bind", str(ws.runtime), str(ws.runtime)]
            if ws.kdirs is not None:  # its own folder (sockets), with the configuration read-only
                k = ws.kdirs
                args += ["--bind", str(k.root), str(k.root)]
                for d in k.readonly:
                    args += ["--ro-bind", str(d), str(d)]
        args += ["--remount-ro", "/"]
        if ws is not None:
            args += ["--chdir", str(ws.kdirs.cwd if ws.kdirs is not None else ws.work)]
        if probe:
            args += ["--"]
        return args

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
            "-m",
            "ipykernel_launcher",
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
            _track(_live_kernels, proc.pid, getattr(km.provisioner, "pgid", None) or proc.pid)
        return km

    def _prepare(self, workspace: Workspace) -> tuple[KernelDirs, Cgroup | None, str]:
        """A kernel's fresh start-up folders, its cgroup (or why none) and, as root, its user."""
        kdirs = workspace.new_kernel_dirs()
        cgroup, note = None, "not requested"
        if self.use_cgroup:
            cgroup, note = Cgroup.create(self.limits)
            if cgroup is not None:
                _track(_live_cgroups, id(cgroup), cgroup)
        if _is_root():  # the kernel runs as a user of its own, never as root
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
        root = _is_root()
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
            cg_kind, note = _cgroup_support()
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


# ---------------------------------------------------------------- stopping


def _kill_tree(pid: int, pgid: int | None) -> None:
    """SIGKILL a process, its process group and every descendant (found before killing)."""
    procs: list[psutil.Process] = []
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        pass
    if pgid:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(psutil.Error):
        psutil.wait_procs(procs, timeout=3)


class _KernelManager(AsyncKernelManager):  # type: ignore[misc]
    """jupyter_client's manager, which checks whether a killed kernel is gone every 10 ms, not 100."""

    async def _async_wait(self, pollinterval: float = 0.01) -> None:
        await super()._async_wait(min(pollinterval, 0.01))


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
        _kill_tree(pid, pgid)
        _track(_live_kernels, pid, remove=True)
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
