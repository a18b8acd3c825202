"""What a killed grader left behind, found and removed by the next one: only a dead grader's.

A grader stopped normally, or by Ctrl-C or SIGTERM, removes everything it made; one killed with
SIGKILL (or by the machine's out-of-memory killer) cannot. Its kernels die with it (they are
bound to it), but its temporary folders stay, and so do its kernels' empty cgroups and, in the
worst case, a process of a kernel user that escaped its kernel (a `process` level only).

So each such folder and cgroup is named with its owner: the grader process's pid, its start
time in clock ticks since boot and its PID namespace (`<kind><pid>-<ticks>-<ns>-<random>`),
which together name one process for the machine's whole uptime. The next grader to start
sweeps those whose owner is no longer alive: it kills what still runs as the folder's kernel
user, removes that user's files in the shared temporary folders, removes the folder, and kills
and removes the cgroup. A folder of a live grader (another `grade` running at the same time) is
never touched; neither is one it cannot name the owner of (made by another program, by an older
grader, or by a grader in another PID namespace, such as a container sharing /tmp, whose pids
mean nothing here), one that is not a plain folder, or one that is not the grader's own user's.

Here: the names (`prefix`, `owner`) and the sweep of folders; the cgroups are swept by
`cgroups.sweep_cgroups`, each time a kernel's cgroup is made.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path

from grader.kernels.users import KERNEL_UID_BASE, kill_user, remove_tree, remove_user_files

# The kinds of folders and cgroups a grader makes (the longer ones first: they share a start).
KINDS = ("grader-batch-src-", "grader-batch-", "grader-", "gk-")
_OWNED = re.compile(
    r"^(?P<kind>grader-batch-src-|grader-batch-|grader-|gk-)(?P<pid>\d+)-(?P<ticks>\d+)-(?P<ns>\d+)-")

_lock = threading.Lock()
_tag: tuple[int, str] | None = None  # (pid, tag): a forked child gets its own
_swept: set[str] = set()  # folders swept by this process already (once per process is enough)


def start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot; None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    try:  # the command name (in parentheses) may hold spaces: count fields after its end
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (ValueError, IndexError):
        return None


def pid_namespace() -> int:
    """This process's PID namespace (its inode; 0 if unknown)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner_tag() -> str:
    """This process's `<pid>-<start ticks>-<PID namespace>`, as its folders and cgroups carry it."""
    global _tag
    pid = os.getpid()
    with _lock:
        if _tag is None or _tag[0] != pid:
            _tag = (pid, f"{pid}-{start_ticks(pid) or 0}-{pid_namespace()}")
        return _tag[1]


def prefix(kind: str) -> str:
    """The name prefix of a folder or cgroup of `kind` ("grader-", "gk-", ...) made by this process."""
    assert kind in KINDS, kind
    return f"{kind}{owner_tag()}-"


def owner(name: str) -> tuple[int, int] | None:
    """(pid, start ticks) of the grader that made a folder or cgroup of that name, if it says and
    it ran in this PID namespace (elsewhere its pid names no process here)."""
    m = _OWNED.match(name)
    if m is None or int(m["ns"]) != pid_namespace() or not int(m["ticks"]):
        return None
    return int(m["pid"]), int(m["ticks"])


def owner_alive(pid: int, ticks: int) -> bool:
    """Whether the process that made it still runs (the same pid and the same start time)."""
    return start_ticks(pid) == ticks


def dead_owners(name: str) -> bool:
    """Whether `name` is a grader's and that grader is gone."""
    who = owner(name)
    return who is not None and not owner_alive(*who)


def sweep_folders(top: Path) -> list[Path]:
    """Remove the grader folders in `top` whose grader is dead; the folders removed."""
    removed = []
    try:
        entries = list(os.scandir(top))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(KINDS) or not dead_owners(e.name):
            continue
        try:
            st = e.stat(follow_symlinks=False)
            if not e.is_dir(follow_symlinks=False) or st.st_uid != os.getuid():
                continue  # not a folder the grader made: never followed, never removed
            # the kernel user of a workspace owns its `work` folder: what it left goes too
            uid = os.stat(os.path.join(e.path, "work"), follow_symlinks=False).st_uid
        except OSError:
            uid = None
        if uid is not None and uid >= KERNEL_UID_BASE:
            kill_user(uid)
            remove_user_files(uid)
        remove_tree(Path(e.path))
        removed.append(Path(e.path))
    return removed


def sweep(tops: list[Path] | None = None) -> list[Path]:
    """Sweep the temporary folders (TMPDIR's and /tmp) of dead graders, once per process each."""
    import tempfile

    tops = tops if tops is not None else [Path(tempfile.gettempdir()), Path("/tmp")]
    removed: list[Path] = []
    for top in tops:
        key = os.path.realpath(top)
        with _lock:
            if key in _swept:
                continue
            _swept.add(key)
        with contextlib.suppress(OSError):
            removed += sweep_folders(top)
    return removed
