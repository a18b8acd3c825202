"""The server's side of the grading worker: start it with a fresh lease, and when it dies,
take back the jobs it held (queued once more at most, else an `error` row) and start another.

At start, jobs held by any earlier lease (a server or worker killed with `kill -9`) are taken
back the same way before the new worker claims anything.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from grader.service.store import Store
from grader.service.worker import failure_report

RESTART_PAUSE_S = 1.0


class Supervisor:
    """One worker process at a time, restarted when it dies, stopped with the server."""

    def __init__(self, db: Path, jobs: int, cell_timeout: float | None, total_timeout: float,
                 isolation: str | None, sources: dict[str, str] | None = None):
        self.db, self.jobs, self.sources = db, jobs, sources or {}
        self.cell_timeout, self.total_timeout, self.isolation = cell_timeout, total_timeout, isolation
        self.proc: subprocess.Popen[bytes] | None = None
        self.lease = ""
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.restarts = 0

    def recover(self) -> tuple[int, int]:
        """Jobs of every lease but the live worker's back to the queue (or an error row)."""
        store = Store(self.db)
        try:
            return store.recover(self.lease, failure_report)
        finally:
            store.close()

    def _spawn(self) -> None:
        self.lease = f"{os.getpid()}-{secrets.token_hex(8)}"
        cmd = [sys.executable, "-m", "grader.service.worker", str(self.db), "--lease", self.lease,
               "--jobs", str(self.jobs), "--total-timeout", str(self.total_timeout)]
        if self.cell_timeout is not None:
            cmd += ["--cell-timeout", str(self.cell_timeout)]
        if self.isolation:
            cmd += ["--isolation", self.isolation]
        for asg, source in self.sources.items():
            cmd += ["--assignment", f"{asg}={source}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        """Take back what earlier runs held, then start the worker and its watcher."""
        self.lease = ""
        self.recover()
        self._spawn()
        self.thread = threading.Thread(target=self._watch, name="grader-worker-watch", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.is_set():
            proc = self.proc
            if proc is None or proc.poll() is None:
                self.stopping.wait(0.5)
                continue
            # the worker died (a crash, an OOM kill, kill -9): its jobs go back, once at most
            self.lease = ""
            self.recover()
            self.restarts += 1
            if self.stopping.wait(RESTART_PAUSE_S):
                return
            self._spawn()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        """Stop the worker (it stops its kernels); its unfinished jobs stay for the next start."""
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
