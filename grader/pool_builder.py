"""Fills an assignment's incomplete pool in a child process while a grade runs.

A child process, not a thread of the grade: it shares no interpreter lock with the grading,
runs at the lowest CPU priority with one thread, and stopping it is immediate however long
the reference's calls take (it is killed; entries are written whole or not at all). It also
ends when its grader does, even one killed with SIGKILL: it watches a pipe only the grader
holds open.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

from .pool import fill, pool_folder, temp_prefix
from .spec import Assignment

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class Builder:
    """The child process filling one assignment's pool; started once, stopped when the grade ends."""

    def __init__(self, asg: Assignment):
        self.asg = asg
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False

    def start(self) -> None:
        """Start filling the pool (unless this builder was stopped already or there is no cache)."""
        if self.stopped or self.process is not None or pool_folder(self.asg) is None:
            return
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONPATH=_PACKAGE_PARENT + (os.pathsep + path if path else ""))
        with contextlib.suppress(OSError):  # no pool this time: the next run computes live again
            self.process = subprocess.Popen(
                [sys.executable, "-m", "grader.pool_builder", str(self.asg.folder)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )

    def stop(self) -> None:
        """Stop now; the entries already written stay, a half-written one goes."""
        self.stopped = True
        p = self.process
        if p is None:
            return
        with contextlib.suppress(OSError):
            p.kill()
        p.wait()
        if p.stdin is not None:
            with contextlib.suppress(OSError):
                p.stdin.close()
        _remove_temporary(pool_folder(self.asg), p.pid)


def _remove_temporary(folder: Path | None, pid: int) -> None:
    """The temporary file a builder killed while writing left behind."""
    if folder is None:
        return
    for t in folder.glob(temp_prefix(pid) + "*"):
        with contextlib.suppress(OSError):
            t.unlink()


def _end_with_grader(folder: Path | None) -> None:
    """Exit as soon as the grader's end of stdin closes (the grader stopped or died)."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):  # (the raw descriptor: a buffered reader would block interpreter exit)
            pass
    _remove_temporary(folder, os.getpid())
    os._exit(0)


def main(argv: list[str]) -> int:
    """Fill the pool of the assignment in folder argv[0]; quietly give up on any failure."""
    with contextlib.suppress(OSError):
        os.nice(19)  # the grade's kernels come first (not SCHED_IDLE: on a busy server it would never run)
    try:
        from .expected import Reference
        from .spec import load_spec

        asg = load_spec(Path(argv[0]))
        threading.Thread(target=_end_with_grader, args=(pool_folder(asg),), daemon=True).start()
        fill(asg, Reference(asg), wait=False)
    except Exception:  # a pool that cannot be built is computed live next time
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
