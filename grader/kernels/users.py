"""The kernels' own users and what they leave: fresh uids, their processes (found by a scan of
/proc, killed), process trees, and the files they leave in folders every user may write to.

When the grader runs as root, each workspace's kernels run as a user of their own (no account
has its uid): it owns nothing of the grader's and can signal nothing but its own processes, and
every process it starts is found by its uid and killed at the end (`kill_user`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil

# The range kernel users' uids are drawn from (no account has such a uid).
KERNEL_UID_BASE = 0x5A000000
KERNEL_UID_SPAN = 1 << 24
# Folders every user may write to: what a kernel's user left there goes with its workspace.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")


def is_root() -> bool:
    """Whether the grader runs as root (then its kernels run as users of their own)."""
    return os.geteuid() == 0


def user_tasks(uid: int | None = None) -> int:
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
    if uid < KERNEL_UID_BASE or not is_root():  # never the grader's own user
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


def kill_tree(pid: int, pgid: int | None) -> None:
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


def remove_user_files(uid: int) -> None:
    """Remove what a kernel user (root only) left at the top of the shared writable folders."""
    if uid < KERNEL_UID_BASE or not is_root():
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
