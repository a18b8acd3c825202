"""The warm parent: a kernel interpreter with ipykernel and numpy already imported, from which
each kernel is forked into a sandbox of its own.

This program runs in the kernel's interpreter (`python -I -c`, its text read from this file by
warm.py; `sys.argv[1]` is the descriptor of its control socket), never imports the grader, and
uses only the standard library, ipykernel and numpy; imported, it does nothing. It runs as
root, holds nothing of any submission (not even the requests: each is read by the forked
child), and ends when the grader's end of its control socket closes.

For each kernel the grader sends it one end of a fresh socket pair; it forks a child (the
keeper, root, outside every namespace of the kernel) that reads the request on it, joins the
kernel's cgroup, hands the connection file to the kernel's user, makes a process namespace
and forks the sandbox's init (pid 1 there), which makes its mount, network, IPC, host-name and
cgroup namespaces, builds a fresh root (a tmpfs with read-only binds, then pivot_root), applies the
rlimits, becomes the kernel's user (no groups, no new privileges) and forks the kernel (pid 2):
standard streams replaced, every inherited descriptor closed, the environment replaced, the
random generators reseeded, then ipykernel. The keeper tells the grader the kernel is ready
(or why not), later how it ended, and stays until the grader lets it go, so the pid the grader
may still signal is never reused.
"""

import importlib
import os
import sys

# What every kernel has loaded by the time the probe runner is installed, loaded once here: the
# kernel application and what its start-up imports, numpy and the runner's own imports. Nothing
# more (the runner takes what is loaded then as what no notebook imported), nothing of any
# submission. A module this interpreter lacks is simply loaded by no one.
PRELOAD = (
    "runpy", "numpy", "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell",
    "ipykernel.comm", "ipykernel.eventloops", "ipykernel.debugger", "debugpy", "comm", "pdb",
    "faulthandler", "tornado.platform.asyncio", "IPython.core.debugger", "IPython.core.completer",
    "IPython.core.completerlib", "IPython.core.oinspect", "IPython.extensions.storemagic",
    "binascii", "hashlib", "inspect", "itertools", "json", "linecache", "pathlib", "random", "types",
)


def preload():
    """Load PRELOAD: what those imports set in the environment (as they would in each kernel's,
    kept for the kernels), and every module loaded by then."""
    before = dict(os.environ)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    return {k: v for k, v in os.environ.items() if before.get(k) != v}, set(sys.modules)


# Only as the program: what is loaded here, before this program's own imports below, is all a
# kernel keeps loaded (each unloads the rest, this parent's own work, before ipykernel starts).
SET_BY_IMPORTS, PRELOADED = preload() if __name__ == "__main__" else ({}, set())

import ctypes  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import stat  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402

libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
NEWNS, NEWUTS, NEWIPC, NEWPID, NEWNET = 0x20000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
NEWCGROUP = 0x02000000
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


class Refused(Exception):
    pass


def _b(s):
    return None if s is None else os.fsencode(s)


def check(ret, what):
    if ret != 0:
        raise Refused(f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(src, dst, fstype, flags, data=None):
    check(libc.mount(_b(src), _b(dst), _b(fstype), ctypes.c_ulong(flags), _b(data)), f"mount {dst}")


def prctl(*args):
    return libc.prctl(*[ctypes.c_ulong(a) for a in args])


def build_root(plan):
    """A fresh root: a tmpfs holding only what the plan binds or makes; then pivot_root into it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    fds = {}
    for op in plan:
        if op[0] == "bind" and op[1] not in fds:
            fds[op[1]] = os.open(op[1], os.O_PATH | os.O_CLOEXEC)
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            fds["/dev/" + name] = os.open("/dev/" + name, os.O_PATH | os.O_CLOEXEC)
    new = "/tmp"  # the new root's mount point, in this mount namespace only (the sources are open)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")

    def at(p):
        return new + p

    def place(p, is_dir):
        if is_dir:
            os.makedirs(at(p), 0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(at(p)), 0o755, exist_ok=True)
            if not os.path.lexists(at(p)):
                os.close(os.open(at(p), os.O_CREAT | os.O_WRONLY, 0o644))

    def bind(src, dst, flags):
        fd = fds[src]
        place(dst, stat.S_ISDIR(os.fstat(fd).st_mode))
        mount(f"/proc/self/fd/{fd}", at(dst), None, MS_BIND | MS_REC)
        mount(None, at(dst), None, MS_REMOUNT | MS_BIND | flags)

    for op in plan:
        kind = op[0]
        if kind == "bind":  # ("bind", source, destination, read_only)
            bind(op[1], op[2], MS_NOSUID | MS_NODEV | (MS_RDONLY if op[3] else 0))
        elif kind == "symlink":  # ("symlink", target, destination)
            place(os.path.dirname(op[2]), True)
            os.symlink(op[1], at(op[2]))
        elif kind == "tmpfs":  # ("tmpfs", destination, bytes, mode, read_only)
            place(op[1], True)
            mount("tmpfs", at(op[1]), "tmpfs", MS_NOSUID | MS_NODEV, f"mode={op[3]:o},size={op[2]}")
            if op[4]:
                mount(None, at(op[1]), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        elif kind == "proc":  # ("proc", destination): of this process namespace
            place(op[1], True)
            mount("proc", at(op[1]), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "dev":  # ("dev", destination): the harmless devices and the usual links only
            place(op[1], True)
            mount("tmpfs", at(op[1]), "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
            for name in DEVICES:
                if "/dev/" + name in fds:
                    bind("/dev/" + name, f"{op[1]}/{name}", MS_NOSUID | MS_NOEXEC)
            for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                                 ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
                os.symlink(target, at(f"{op[1]}/{name}"))
        elif kind == "readonly":  # ("readonly", destination)
            mount(None, at(op[1]), None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
        else:
            raise Refused(f"unknown mount step {kind!r}")
    for fd in fds.values():
        os.close(fd)
    if PIVOT_ROOT is None:
        raise Refused("pivot_root: unknown machine " + platform.machine())
    os.chdir(new)
    check(libc.syscall(PIVOT_ROOT, b".", b"."), "pivot_root")
    check(libc.umount2(b".", 2), "detach the old root")  # MNT_DETACH
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def loopback_up():
    """The new network namespace's loopback, up (as bubblewrap leaves it): its own 127.0.0.1 only."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 0x1 | 0x40))  # SIOCSIFFLAGS: UP, RUNNING
    except OSError as e:
        raise Refused(f"loopback: {e.strerror}") from None
    finally:
        s.close()


def become(cfg):
    """Limits and priority, then the kernel's own user: no groups, no way back to root, no new privileges."""
    for name, value in cfg["rlimits"].items():
        soft, hard = resource.getrlimit(getattr(resource, name))
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(getattr(resource, name), (value, value))
    if cfg.get("nice"):  # a kernel started ahead of need: lower priority, never higher
        os.nice(max(0, int(cfg["nice"])))
    uid = cfg["uid"]
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if prctl(38, 1, 0, 0, 0):  # PR_SET_NO_NEW_PRIVS
        raise Refused("cannot forbid new privileges")
    try:
        os.setuid(0)
    except OSError:
        pass
    else:
        raise Refused("could become root again")
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != uid or os.getgroups():
        raise Refused("the change of user did not hold")


def kernel(cfg, log_fd, ready_fd):
    """Pid 2 of the sandbox: a fresh process for the kernel, sharing nothing it did not inherit."""
    import ipykernel.kernelapp  # (loaded already: by PRELOAD, checked by main)

    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log_fd, 2)
    keep = sorted({0, 1, 2, ready_fd})
    for lo, hi in zip(keep, keep[1:] + [1 << 20]):
        if hi > lo + 1:
            os.closerange(lo + 1, hi)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(cfg["env"])
    os.environ.update(SET_BY_IMPORTS)
    os.environ["PWD"] = cfg["cwd"]
    sys.dont_write_bytecode = True
    os.chdir(cfg["cwd"])
    # fork copied the parent's generators: each kernel draws its own seeds from the system
    random.seed()
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()
    sys.argv = ["ipykernel_launcher", *cfg["argv"]]
    for name in set(sys.modules) - PRELOADED:  # only this parent's own work needed them
        sys.modules.pop(name, None)
    os.write(ready_fd, b"")
    os.close(ready_fd)
    code = 0
    try:
        ipykernel.kernelapp.IPKernelApp.launch_instance(argv=cfg["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    try:
        import atexit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def init(cfg, log_fd, ready_fd):
    """Pid 1 of the sandbox: builds it, becomes the kernel's user, forks the kernel, reaps."""
    try:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: dies with the keeper
        check(libc.unshare(NEWNS | NEWNET | NEWIPC | NEWUTS), "unshare")
        libc.unshare(NEWCGROUP)  # where the kernel's cgroup sits on the host is not its business (if supported)
        check(libc.sethostname(b"grader", 6), "sethostname")
        loopback_up()
        build_root(cfg["plan"])
        become(cfg)
        prctl(1, signal.SIGKILL)  # cleared by the change of user
        pid = os.fork()
    except BaseException as e:
        os.write(ready_fd, f"{type(e).__name__}: {e}".encode()[:1000])
        os._exit(120)
    if pid == 0:
        try:
            kernel(cfg, log_fd, ready_fd)
        except BaseException as e:
            os.write(ready_fd, f"{type(e).__name__}: {e}".encode()[:1000])
        os._exit(120)
    os.close(ready_fd)
    os.close(log_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the kernel's (by message), never init's
    while True:
        try:
            done, status = os.wait()
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if done == pid:  # as bubblewrap reports it: a signal as 128 + its number
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def send(chan, **msg):
    try:
        chan.send(json.dumps(msg).encode())
    except OSError:
        pass


def keeper(chan):
    """One kernel's keeper (root, outside its namespaces): starts it, reports, outlives it."""
    prctl(1, signal.SIGKILL)  # dies with the warm parent
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setpgid(0, 0)
    try:
        data, fds, _, _ = socket.recv_fds(chan, 1 << 20, 2)
        cfg = json.loads(data)
        log_fd = fds[0]
        for path in cfg["cgroups"]:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
        os.chown(cfg["connection_file"], cfg["uid"], cfg["uid"])
        check(libc.unshare(NEWPID), "unshare pid")
        r, w = os.pipe()
        pid = os.fork()
    except BaseException as e:
        send(chan, error=f"{type(e).__name__}: {e}"[:1000])
        os._exit(1)
    if pid == 0:
        chan.close()
        os.close(r)
        init(cfg, log_fd, w)
        os._exit(120)
    os.close(w)
    os.close(log_fd)
    why = b""
    while True:
        part = os.read(r, 4096)
        if not part:
            break
        why += part
    os.close(r)
    if why:
        os.waitpid(pid, 0)
        send(chan, error=why.decode(errors="replace"))
        os._exit(1)
    send(chan, ready=True, pid=os.getpid())
    pidfd = os.pidfd_open(pid)
    while True:
        readable, _, _ = select.select([chan, pidfd], [], [])
        if pidfd in readable:
            break
        try:
            asked = chan.recv(64)
            sig = int(json.loads(asked)["signal"]) if asked else signal.SIGKILL
        except (OSError, ValueError, KeyError, TypeError):
            sig = signal.SIGKILL
        # the sandbox's init takes no signal but SIGKILL from outside; its death ends the sandbox
        os.kill(pid, signal.SIGKILL if sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT) else sig)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    send(chan, exit=code)
    while chan.recv(64):  # until the grader lets go: until then this pid is the kernel's
        pass
    os._exit(0)


def main():
    import ipykernel.kernelapp  # noqa: F401 (where it cannot be loaded the parent fails at start)

    ctl = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # keepers are reaped by the system
    if threading.active_count() != 1:
        send(ctl, error="threads were started while importing; forking is not safe")
        return
    send(ctl, ready=True, pid=os.getpid())
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 16, 1)
        except InterruptedError:
            continue
        if not msg and not fds:  # the grader is gone or done
            return
        for fd in fds[1:]:
            os.close(fd)
        if not fds:
            continue
        try:
            pid = os.fork()
        except OSError:
            os.close(fds[0])
            continue
        if pid == 0:
            ctl.close()
            try:
                keeper(socket.socket(fileno=fds[0]))
            finally:
                os._exit(1)
        os.close(fds[0])


if __name__ == "__main__":
    main()
