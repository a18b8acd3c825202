"""What the isolation levels rest on: the sandbox's view (bubblewrap's arguments: its interpreter's
folders read-only, the grader's hidden even where installed in that interpreter's environment,
its workspace writable), and the on-disk memory of the levels found to work here.

Probing a level (starting a wrapped Python) costs a noticeable part of a grading, so a level
found to work is remembered on disk, keyed by everything the probe's outcome depends on. Only
"this level works" is remembered: stronger levels are still probed every time, so the cache
can never make a run pick a weaker level than a fresh probe would. A remembered level that
then fails to start a kernel is forgotten and the levels are probed again (the launcher's
`recheck`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.cachefiles import PACKAGE_DIR, hash_package_files, write_atomic
from grader.errors import GraderError
from grader.options import CACHE_DIR_VARIABLE, ISOLATION_LEVELS, cache_dir

if TYPE_CHECKING:
    from grader.kernels.workspace import Workspace

# The kernel's user inside the sandbox; nothing on the host is owned by it.
SANDBOX_UID = 65534
# /etc files a Python kernel needs (dynamic loader, user names, time zone); nothing else of /etc.
SANDBOX_ETC = (
    "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd", "/etc/group",
    "/etc/nsswitch.conf", "/etc/localtime", "/etc/mime.types", "/etc/alternatives",
)
# Size of each writable tmpfs of the sandbox (/tmp, /dev/shm); the rest of its tree is read-only.
SANDBOX_TMPFS_BYTES = 64 * 2**20
# The program that asks an interpreter for its folders (run in that interpreter).
_PYTHON_DIRS = (Path(__file__).parent / "python_dirs.py").read_text(encoding="utf-8")


# ---------------------------------------------------------------- folders

@functools.cache
def interpreter_dirs(python: str) -> tuple[str, ...]:
    """An interpreter's prefixes and its site-packages outside them (as that interpreter says)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable) and Path(python).parent == Path(sys.executable).parent:
        return (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                *(p for p in sys.path if p and p.rstrip("/").endswith(("site-packages", "dist-packages"))))
    # Asking costs an interpreter's start (tens of ms) before every first kernel: the answer is
    # remembered, keyed by the interpreter, its target and its venv's configuration
    key = _python_key(python)
    remembered = _remembered_dirs().get(key)
    if remembered is not None:
        return tuple(remembered)
    try:  # -I: neither the grader's PYTHONPATH nor the user's site folder
        r = subprocess.run([python, "-I", "-c", _PYTHON_DIRS], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        dirs = json.loads(r.stdout)
        if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
            raise ValueError(f"it printed {r.stdout[:80]!r}")
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        raise GraderError(f"the kernel's Python {python} does not run ({e})") from None
    _remember_dirs(key, dirs)
    return tuple(dirs)


def _python_key(python: str) -> str:
    """What an interpreter's folders depend on: its path, what it runs, its venv's configuration."""
    real = os.path.realpath(python)
    facts = [python, real, stat_key(python), stat_key(real),
             stat_key(str(Path(python).parent.parent / "pyvenv.cfg"))]
    return hashlib.sha256(json.dumps(facts, default=str).encode()).hexdigest()


def _dirs_valid(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(d, str) for d in value)


def _remembered_dirs() -> dict[str, list[str]]:
    return _load_memory(_PYTHONS_FILE, _dirs_valid)


def _remember_dirs(key: str, dirs: list[str]) -> None:
    _remember(_PYTHONS_FILE, _dirs_valid, key, dirs)


def grader_dirs(visible: list[str]) -> list[str]:
    """Folders of the grader inside `visible` ones: its package, the shared reference package and
    every assignment folder it knows (references, hidden generators). A sandboxed kernel sees an
    empty folder in their place, even when they are installed in the environment it runs from."""
    from grader.assignment.load import (  # (the assignment stage imports no kernel code)
        PACKAGE_ASSIGNMENTS,
        known_assignments,
    )

    package = PACKAGE_DIR
    cands = {package, package.parent / "reference", PACKAGE_ASSIGNMENTS.resolve(),
             *(f.resolve() for f in known_assignments().values())}
    roots = [os.path.realpath(v).rstrip("/") + "/" for v in visible]
    inside = sorted(str(c) for c in cands if c.is_dir() and any(str(c).startswith(r) for r in roots))
    return [d for d in inside if not any(d != o and d.startswith(o + "/") for o in inside)]


def bwrap_args(python_dirs: list[str], ws: Workspace | None, probe: bool) -> list[str]:
    """bubblewrap's arguments for the `sandbox` level: the system, /etc's few files and the Python
    folders (`python_dirs`) read-only, the grader's folders among those hidden, small writable
    tmpfs for /tmp and /dev/shm, and, with a workspace, its folders; the rest read-only."""
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
    for src in python_dirs:  # after /tmp: a virtual environment may live there
        args += ["--ro-bind", src, src]
    for hidden in grader_dirs(python_dirs):  # the grader itself, where it is installed in that environment
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


# ---------------------------------------------------------------- the levels known to work

LEVEL_CACHE_ENV = CACHE_DIR_VARIABLE
_LEVEL_CACHE_VERSION = 1
_LEVEL_CACHE_MAX = 32  # entries kept (one per Python, wrapper and system the grader has run with)
# the cache folder's memories (see _load_memory): levels known to work, kernel interpreters' folders
_LEVELS_FILE, _PYTHONS_FILE = "isolation.json", "pythons.json"
_SYSTEM_FILES = (  # what makes namespaces work or not, beside the wrapper programs themselves
    "/proc/sys/kernel/random/boot_id", "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    "/proc/sys/kernel/unprivileged_bpf_disabled",
)


def level_cache_file() -> Path | None:
    """Where levels known to work are remembered ($NNGRADER_CACHE_DIR, else the user's cache folder)."""
    base = cache_dir()
    return None if base is None else base / _LEVELS_FILE


def stat_key(path: str | None) -> list[Any]:
    """What tells a file changed (for a cache key): its path, size, times, inode, mode, owner."""
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
def system_key() -> list[Any]:
    """This machine, boot, container and kernel settings (namespaces, sysctls), as the probe sees them."""
    ns = []
    for name in ("user", "mnt", "pid", "net", "cgroup"):
        try:
            ns.append(os.stat(f"/proc/self/ns/{name}").st_ino)
        except OSError:
            ns.append(None)
    spec = importlib.util.find_spec("ipykernel")
    return [os.uname().release, os.uname().version, [_read_small(f) for f in _SYSTEM_FILES], ns,
            stat_key(spec.origin if spec else None),
            _kernel_code_digest()]  # how this grader wraps kernels


def _kernel_code_digest() -> str:
    h = hashlib.sha256()
    hash_package_files(h, ("kernels/*.py",))
    return h.hexdigest()


def _level_valid(value: Any) -> bool:
    return value in ISOLATION_LEVELS


def remembered_levels() -> dict[str, str]:
    """The levels known to work (key -> level); nothing if there is no cache folder."""
    return _load_memory(_LEVELS_FILE, _level_valid)


def remember_level(key: str, level: str) -> None:
    """Remember that `level` works for `key` (the newest last: the oldest entries go first)."""
    _remember(_LEVELS_FILE, _level_valid, key, level)


def forget_level(key: str) -> None:
    """Forget the level remembered for `key`, if any."""
    works = remembered_levels()
    if works.pop(key, None) is not None:
        _save_memory(_LEVELS_FILE, works)


# A memory is a small JSON map in the cache folder (key -> value), the newest entries last and
# at most _LEVEL_CACHE_MAX of them; anything unreadable or malformed is no memory at all, and a
# disk that cannot keep it only means asking again.

def _load_memory(name: str, valid: Callable[[Any], bool]) -> dict[str, Any]:
    base = cache_dir()
    if base is None:
        return {}
    try:
        data = json.loads((base / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _LEVEL_CACHE_VERSION:
        return {}
    works = data.get("works")
    if not isinstance(works, dict):
        return {}
    return {k: v for k, v in works.items() if isinstance(k, str) and valid(v)}


def _remember(name: str, valid: Callable[[Any], bool], key: str, value: Any) -> None:
    known = _load_memory(name, valid)
    known.pop(key, None)
    known[key] = value
    _save_memory(name, dict(list(known.items())[-_LEVEL_CACHE_MAX:]))


def _save_memory(name: str, works: dict[str, Any]) -> None:
    """Write a memory atomically (concurrent graders each leave a whole file)."""
    base = cache_dir()
    if base is None:
        return
    try:
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps({"version": _LEVEL_CACHE_VERSION, "works": works}).encode("utf-8")
        write_atomic(base / name, data, "." + name.split(".")[0] + ".")
    except OSError:  # a read-only or full disk: asked each time, as without a cache
        pass
