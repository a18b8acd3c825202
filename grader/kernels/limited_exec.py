"""Runs as `python -I -S -c` between the grader and the kernel, before any student code, in the
kernel's interpreter (it never imports the grader; the standard library only).

`sys.argv[1]` is its configuration (JSON), `sys.argv[2:]` the command it becomes. It joins the
cgroups, applies the rlimits and the CPU priority, and, when the grader is root, hands the connection file to the
kernel's user, makes the folders that user needs reachable (in a mount namespace of its own,
when a folder above them is closed to others: a tmpfs over that folder holding only them), and
becomes that user (no groups, no new privileges); then asks to die with its parent and becomes
the kernel (or the wrapper that starts it). At the `namespace` level as root it runs twice:
outside `unshare` (limits) and inside it (the change of user, which unshare itself needs root
for). The launcher reads this file and passes its text to `python -c`.
"""

import json
import os
import resource
import sys


def die(code, why):
    sys.stderr.write(f"grader: {why}\n")
    sys.stderr.flush()
    os._exit(code)


def prctl(*args):
    import ctypes
    return ctypes.CDLL(None, use_errno=True).prctl(*[ctypes.c_ulong(a) for a in args])


def join_cgroups(paths):
    for path in paths:
        try:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            die(121, "cannot join the kernel's cgroup")  # a limit we promised is not in force: refuse to run


def apply_rlimits(rlimits):
    for name, value in rlimits.items():
        try:
            soft, hard = resource.getrlimit(getattr(resource, name))
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError, AttributeError):
            pass


def open_reach(reach):
    """Folders the kernel's user must reach, behind folders it may not search: in a mount namespace
    of its own, a tmpfs over each such closed folder, holding only them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    groups = {}
    for p in reach:
        parts = p.strip("/").split("/")
        for i in range(1, len(parts)):
            a = "/" + "/".join(parts[:i])
            if not os.stat(a).st_mode & 0o001:
                groups.setdefault(a, []).append(p)
                break
    if not groups:
        return
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


def become(uid):
    """No groups, no root, no way back, no set-user-id programs."""
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


def main():
    cfg = json.loads(sys.argv[1])
    join_cgroups(cfg.get("cgroups", []))
    apply_rlimits(cfg.get("rlimits", {}))
    if cfg.get("nice"):  # a kernel started ahead of need: lower priority, never higher
        os.nice(max(0, int(cfg["nice"])))
    uid = cfg.get("uid")
    try:
        for path in cfg.get("give", []):  # the connection file: the kernel's user may read it, no one else
            os.chown(path, cfg["owner"], cfg["owner"])
        if cfg.get("reach"):
            open_reach(cfg["reach"])
        if uid is not None:
            become(uid)
    except OSError as e:
        die(122, f"cannot run the kernel as an unprivileged user ({e.strerror})")
    if cfg.get("pdeathsig"):  # after the change of user, which clears it
        try:
            prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        except Exception:
            pass
    os.execvp(sys.argv[2], sys.argv[2:])


if __name__ == "__main__":
    main()
