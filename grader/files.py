"""Files that come from a submission, opened as regular files only: never through a symbolic
link, never a device, a named pipe or a socket, never past a size limit, never blocking.

The grader may run as root: a "notebook" that is a link to another student's notebook, to an
assignment's solution or to a system file must not be read, and `/dev/zero` or a FIFO must
not hang or flood it. Every file a submission brings (the notebook and the files that travel
with it) is read through here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20


class NotRegularFile(OSError):
    """The path is a link, a device, a pipe, a socket or a folder, or is over its size limit."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def refusal(path: Path) -> str | None:
    """Why `path` is not a regular file of its own (a link, device, pipe, socket, folder), or
    None when it is one (or does not exist: the caller says so in its own words)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else f"is {_kind(mode)}, not a regular file"


def open_regular(path: Path) -> int:
    """A read-only descriptor of `path`, which must be a regular file reached without following
    a link at its last component. Raises NotRegularFile, or OSError (e.g. missing)."""
    try:
        fd = os.open(path, _FLAGS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW on a link
            raise NotRegularFile(errno.ELOOP, "is a symbolic link, not a regular file") from None
        if e.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket, or a FIFO with no writer on some systems
            raise NotRegularFile(e.errno, refusal(path) or "not a regular file") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, f"is {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)  # a regular file: reads never block anyway
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (NotRegularFile past it)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb", closefd=True) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise NotRegularFile(errno.EFBIG, _over(size, limit))
        data = f.read(limit + 1)  # the file may have grown since fstat
    if len(data) > limit:
        raise NotRegularFile(errno.EFBIG, _over(len(data), limit))
    return data


def copy_regular(src: Path, dest: Path, limit: int) -> None:
    """Copy the regular file `src` to a new file `dest`, at most `limit` bytes (NotRegularFile
    past it, with nothing left at `dest`)."""
    fd = open_regular(src)
    with os.fdopen(fd, "rb", closefd=True) as fin:
        if os.fstat(fin.fileno()).st_size > limit:
            raise NotRegularFile(errno.EFBIG, _over(os.fstat(fin.fileno()).st_size, limit))
        try:
            with open(dest, "xb") as fout:
                copied = 0
                while chunk := fin.read(min(_CHUNK, limit + 1 - copied)):
                    copied += len(chunk)
                    if copied > limit:
                        raise NotRegularFile(errno.EFBIG, _over(copied, limit))
                    fout.write(chunk)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            raise


def _over(size: int, limit: int) -> str:
    return f"is {_mb(size)}, over the {_mb(limit)} limit"


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


