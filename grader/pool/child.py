"""Pool entries computed in a child process: torch's work kept out of the grading process.

Two uses of one child program (`python -m grader.pool.child MODE FOLDER`):

- `fill` (Builder): fills an assignment's incomplete on-disk pool while a grade runs. A child,
  not a thread of the grade, shares no interpreter lock with the grading, runs at the lowest
  CPU priority with one thread, and is stopped at once however long the reference's calls
  take (killed: entries are written whole or not at all).
- `serve` (Planner): computes the entry of each seed a batch asks for, in the order asked,
  and sends it back on stdout: a batch's submissions each have their own seed, and computing
  their reference values in the grading process took a third of its time.

Either child ends when its grader does, even one killed with SIGKILL: `fill` watches a pipe
only the grader holds open, `serve` reads its requests from one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from grader.assignment.model import Assignment
from grader.cachefiles import PACKAGE_DIR
from grader.pool.store import Entry, fill, pool_folder, pool_key, record, remove_temporary

_PACKAGE_PARENT = str(PACKAGE_DIR.parent)
_ANSWER = struct.Struct("<QQ")  # seed, length of the entry's bytes (0: it could not be computed)
_MAX_ENTRY = 1 << 30
ENTRY_TIMEOUT = 120.0  # seconds without any answer (one takes about 1 s for the slowest shipped
# assignment) before the child is given up on


def _command(mode: str, asg: Assignment) -> tuple[list[str], dict[str, str]]:
    """The child's command line and environment (one thread: the kernels need the cores)."""
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=_PACKAGE_PARENT + (os.pathsep + path if path else ""))
    return [sys.executable, "-m", "grader.pool.child", mode, str(asg.folder)], env


class Builder:
    """The child process filling one assignment's pool; started once, stopped when the grade ends."""

    def __init__(self, asg: Assignment):
        self.asg = asg
        self.process: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self._lock = threading.Lock()  # (started from the planning thread, stopped from the event loop)

    def start(self) -> None:
        """Start filling the pool (unless this builder was stopped already or there is no cache)."""
        with self._lock:
            if self.stopped or self.process is not None or pool_folder(self.asg) is None:
                return
            argv, env = _command("fill", self.asg)
            with contextlib.suppress(OSError):  # no pool this time: the next run computes live again
                self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, env=env)

    def stop(self) -> None:
        """Stop now; the entries already written stay, a half-written one goes."""
        with self._lock:
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
        remove_temporary(pool_folder(self.asg), p.pid)


class Planner:
    """A child process computing the entries of a batch's seeds a few submissions ahead.

    `entry(seed)` is that seed's entry, or None if the child could not compute it (the
    submission's run then computes live, as without a planner). At most `window` entries wait
    in the grader at a time, so its memory does not grow with the batch."""

    def __init__(self, asg: Assignment, seeds: Iterable[int], window: int = 8, timeout: float = ENTRY_TIMEOUT):
        self.asg = asg
        self.window = max(1, window)
        self.timeout = timeout
        self._upcoming = collections.deque(seeds)  # in the order the batch grades them
        self._waiting: dict[int, asyncio.Future[bytes | None]] = {}  # the window: asked, not yet taken
        self._asked: dict[int, asyncio.Future[bytes | None]] = {}  # asked, not yet answered
        # A plain Popen (not asyncio's subprocess): its own wait is the only one that reaps the
        # child, where asyncio's would race Popen.kill's poll for it (and log a lost exit status)
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failed = False
        self._answered = 0.0  # (loop time) the child's last answer, or its start

    async def start(self) -> None:
        """Start the child and ask for the first seeds."""
        argv, env = _command("serve", self.asg)
        loop = asyncio.get_running_loop()
        try:
            self._process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL, env=env)
            assert self._process.stdout is not None
            out = asyncio.StreamReader(limit=2**16)
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(out), self._process.stdout)
        except OSError:
            self._fail()
            return
        self._answered = loop.time()
        self._reader = asyncio.ensure_future(self._read(out))
        self._top_up()

    def _ask(self, seed: int) -> None:
        asked = self._asked.get(seed)  # (already on its way: the same notebook handed in twice)
        if asked is None:
            asked = asyncio.get_running_loop().create_future()
            if self._failed or self._process is None or self._process.stdin is None:
                asked.set_result(None)
            else:
                self._asked[seed] = asked
                try:  # (a few bytes per seed, at most a window of them unread: never blocks)
                    self._process.stdin.write(f"{seed}\n".encode())
                    self._process.stdin.flush()
                except (OSError, ValueError):
                    self._fail()
        self._waiting[seed] = asked

    def _top_up(self) -> None:
        while self._upcoming and len(self._waiting) < self.window:
            seed = self._upcoming.popleft()
            if seed not in self._waiting:
                self._ask(seed)

    async def _read(self, out: asyncio.StreamReader) -> None:
        try:
            while True:
                seed, n = _ANSWER.unpack(await out.readexactly(_ANSWER.size))
                if n > _MAX_ENTRY:  # not an answer of ours: the stream cannot be trusted any more
                    break
                raw = await out.readexactly(n) if n else None
                self._answered = asyncio.get_running_loop().time()
                asked = self._asked.pop(seed, None)
                if asked is not None and not asked.done():
                    asked.set_result(raw)
        except (asyncio.IncompleteReadError, OSError, struct.error):
            pass
        self._fail()

    def _fail(self) -> None:
        """The child is gone (or of no use): every seed asked for, and every later one, computes live."""
        self._failed = True
        for waiting in [*self._asked.values(), *self._waiting.values()]:
            if not waiting.done():
                waiting.set_result(None)
        self._asked.clear()
        if self._process is not None:
            with contextlib.suppress(OSError):  # (Popen.kill: nothing once it has been waited for)
                self._process.kill()

    @property
    def pending(self) -> int:
        """Seeds asked for and not yet taken (their entries, once computed, held here)."""
        return len(self._waiting)

    async def entry(self, seed: int) -> Entry | None:
        """The entry of `seed` (asking for it now if it was not among the next ones); None if the
        child could not compute it, or gave no answer at all for `timeout` seconds (it is then
        not used again)."""
        if seed not in self._waiting:
            self._ask(seed)
        waiting = self._waiting[seed]
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    # shielded: a run cancelled while it waits does not cancel what another run
                    # with the same seed (the same notebook, handed in twice) waits for too
                    raw = await asyncio.wait_for(asyncio.shield(waiting), self.timeout)
                    break
                except asyncio.TimeoutError:
                    if loop.time() - self._answered >= self.timeout:  # no answer at all for that long
                        self._fail()
                        raw = None
                        break
        finally:
            self.discard(seed)
        if raw is None:
            return None
        try:
            return Entry.from_bytes(raw)
        except (ValueError, TypeError, KeyError, struct.error):
            return None

    def discard(self, seed: int) -> None:
        """`seed`'s submission is done with its entry (or never asked for it: its grading failed
        before): its place goes to the next seed."""
        self._waiting.pop(seed, None)
        self._top_up()

    async def close(self) -> None:
        """Stop the child (at once: what it was computing is not needed any more)."""
        p = self._process
        if p is not None:
            with contextlib.suppress(OSError):
                p.kill()
            await asyncio.to_thread(p.wait)  # (killed: at once)
            if p.stdin is not None:
                with contextlib.suppress(OSError):
                    p.stdin.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._fail()


def _end_with_grader(found: list[Path | None]) -> None:
    """Exit as soon as the grader's end of stdin closes (the grader stopped or died)."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):  # (the raw descriptor: a buffered reader would block interpreter exit)
            pass
    remove_temporary(found[0] if found else None, os.getpid())
    os._exit(0)


def _private_stdout() -> BinaryIO:
    """The answers' stream: the original stdout, kept for them alone; whatever else writes to
    stdout (a print in a reference, a native library) goes to /dev/null, not into the answers."""
    out = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the child's life)
    return out


def _serve(asg: Assignment, live: object, out: BinaryIO) -> None:
    """Answer each seed read from stdin with its entry on `out`, until stdin closes."""
    key = pool_key(asg)
    for line in sys.stdin.buffer:
        seed = int(line)
        try:
            if key is None:
                raise ValueError("the assignment's files cannot be read")
            raw = record(asg, live, seed).to_bytes()
        except Exception:  # this seed computes live in the grader, as without a planner
            raw = b""
        out.write(_ANSWER.pack(seed, len(raw)) + raw)
        out.flush()


def _die_with_parent() -> None:
    """Be killed when the grader is (not only at its next request or answer)."""
    import ctypes
    import signal

    parent = os.getppid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # (it died before that took hold)
        os._exit(0)


def main(argv: list[str]) -> int:
    """`fill FOLDER` or `serve FOLDER`; any failure quietly ends the child (the grader computes live)."""
    mode, folder = argv
    found: list[Path | None] = []  # the pool's folder, once known
    if mode == "fill":
        with contextlib.suppress(OSError):
            os.nice(19)  # the grade's kernels come first (not SCHED_IDLE: a busy server would starve it)
        threading.Thread(target=_end_with_grader, args=(found,), daemon=True).start()
    else:
        _die_with_parent()
        out = _private_stdout()
    try:
        from grader.assignment.load import load_spec
        from grader.assignment.reference import Reference

        asg = load_spec(Path(folder))
        found.append(pool_folder(asg))
        if mode == "fill":
            fill(asg, Reference(asg), wait=False)
        else:
            _serve(asg, Reference(asg), out)
    except (Exception, KeyboardInterrupt):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
