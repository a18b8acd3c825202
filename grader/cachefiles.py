"""Files the grader keeps or writes for others: written whole or not at all, keyed by content."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent  # the installed `grader` package


def write_atomic(path: Path, data: bytes, prefix: str, suffix: str = "", mode: int | None = None) -> None:
    """Write `data` to `path` through a fresh file of our own in the same folder, renamed over it:
    a concurrent reader sees the old file or the new one, never half of one (and never a file or
    link someone planted at a temporary name). The new file has `mode` (else 0600). Raises OSError."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def hash_python_files(h: hashlib._Hash, folder: Path) -> None:
    """Feed `h` the name and content digest of every Python file in `folder` (an assignment's
    reference and what it imports beside it). Raises OSError."""
    for p in sorted(folder.glob("*.py")):
        h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())


def hash_package_files(h: hashlib._Hash, patterns: tuple[str, ...]) -> None:
    """Feed `h` the path and content digest of the grader's own files matching `patterns` (globs
    relative to the package), so a cache keyed by them ends with any change to that code.
    Raises OSError."""
    for pattern in patterns:
        for p in sorted(PACKAGE_DIR.glob(pattern)):
            rel = p.relative_to(PACKAGE_DIR).as_posix()
            h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
