"""The folders of one run: a fresh, private working folder holding only the notebook, the files
beside it that its code may use and the assignment's files; and, for each kernel started, a fresh
folder of its own (start-up folder, read-only configuration, IPC sockets). When the grader runs
as root, the workspace is handed to the kernel's user; `cleanup` removes it all, with whatever
that user left and every process it still runs."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.files import copy_regular
from grader.kernels import leftovers
from grader.kernels.tracking import live_roots, live_uids, track
from grader.kernels.users import kill_user, remove_tree, remove_user_files
from grader.submission.notebook import MAX_NOTEBOOK_BYTES

# Files beside a notebook that its code may import or read (`import my_answers`, data files).
SIBLING_SUFFIXES = {".py", ".csv", ".txt", ".npy", ".npz", ".json", ".pkl", ".dat", ".tsv"}
SIBLING_MAX_BYTES = 20 * 1024 * 1024
# Folders copied with their structure (a course's package, its data folder): any regular file
# in them, within these bounds; what lies past a bound is left out.
FOLDER_MAX_FILES = 2000
FOLDER_MAX_BYTES = 512 * 1024 * 1024  # all of a folder's files together
FOLDER_FILE_MAX_BYTES = 200 * 1024 * 1024
FOLDER_MAX_DEPTH = 8
# Longest workspace path whose kernels' sockets (<workspace>/kXXXXXX/k-N) still fit in 107 bytes.
MAX_SOCKET_BASE = 90


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
    # How much lower than the grader's its kernels' CPU priority is (a `nice` increment): a
    # kernel started ahead of need boots on what the running kernel and the grader leave.
    nice: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        track(live_roots, self.root)
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
            track(live_roots, base)
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
            track(live_uids, uid)
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
            track(live_uids, self.uid, remove=True)
        for folder in [*self.outside, self.root]:
            remove_tree(folder)
            track(live_roots, folder, remove=True)


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


def copy_tree(src: Path, dest: Path, replace: bool = False) -> None:
    """A folder copied with its structure: regular files only, never through a link (a folder or a
    file that is one is left out, as are devices and pipes), at most FOLDER_MAX_FILES files,
    FOLDER_MAX_BYTES in all and FOLDER_MAX_DEPTH levels deep; what lies past a bound is left out.
    `replace`: files already at `dest` are replaced (an assignment's own files over a student's)."""
    if not stat.S_ISDIR(_lmode(src)):
        return
    budget = [FOLDER_MAX_FILES, FOLDER_MAX_BYTES]
    stack = [(src, dest, 0)]
    while stack:
        folder, target, depth = stack.pop()
        try:
            target.mkdir(exist_ok=True)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name in (".git", "__pycache__", ".ipynb_checkpoints"):
                continue
            mode = _lmode(Path(entry.path))
            if stat.S_ISDIR(mode) and depth + 1 < FOLDER_MAX_DEPTH:
                stack.append((Path(entry.path), target / entry.name, depth + 1))
            elif stat.S_ISREG(mode) and budget[0] > 0:
                out = target / entry.name
                if replace and out.is_file() and not out.is_symlink():
                    out.unlink()
                try:
                    copy_regular(Path(entry.path), out, min(FOLDER_FILE_MAX_BYTES, budget[1]))
                except OSError:  # changed into a link, too large, gone: left out
                    continue
                budget[0] -= 1
                budget[1] -= out.stat().st_size


def _real_folder(base: Path, name: str) -> bool:
    """Whether base/name is a folder reached without a link at any step below base."""
    path = base
    for part in Path(name).parts:
        path = path / part
        if not stat.S_ISDIR(_lmode(path)):
            return False
    return True


def _lmode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def make_workspace(notebook: Path, extra_files: list[Path] | None = None,
                   into: Workspace | None = None, folders: list[str] | None = None) -> Workspace:
    """A fresh folder holding the notebook, the files beside it that code may use, the `folders`
    beside it (with their structure), and shipped files and folders.

    `into`: a workspace made earlier, still empty, whose kernel (started ahead, no code run in it
    yet) may already own its folder: the files go there, and to that kernel's user.
    """
    ws = into or new_workspace()
    try:
        # the submission's own files: regular files only, never through a link (see grader/files.py)
        copy_regular(notebook, ws.work / notebook.name, MAX_NOTEBOOK_BYTES)
        try:
            siblings = list(notebook.parent.iterdir())
        except OSError:
            siblings = []
        for p in siblings:
            if p.suffix.lower() in SIBLING_SUFFIXES and p != notebook:
                try:
                    copy_regular(p, ws.work / p.name, SIBLING_MAX_BYTES)
                except OSError:  # a link, device or pipe, too large, or gone: left out
                    continue
        for name in folders or []:  # a course's package or data folder, as the notebook sees it
            if _real_folder(notebook.parent, name):
                dest = ws.work / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                copy_tree(notebook.parent / name, dest)
        for src in extra_files or []:  # the assignment's own: they replace a student's of that name
            dest = ws.work / src.name
            if src.is_dir():
                copy_tree(src, dest, replace=True)
            else:
                if dest.is_file() and not dest.is_symlink():
                    dest.unlink()
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
