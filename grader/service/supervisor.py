"""The server's side of the grading worker: start it with a fresh lease, and when it dies,
take back the jobs it held (queued once more at most, else an `error` row) and start another.

At start, and every few seconds while it runs, the jobs of leases that are gone (a server or
worker killed with `kill -9`, here or on another host) are taken back the same way. A server
started with `--jobs 0` runs no worker of its own (the `grade worker` processes grade) but
still takes back what dead workers held.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from grader.service.store import STALE_S, Store
from grader.service.worker import failure_report, new_lease

RESTART_PAUSE_S = 1.0
RECOVER_S = min(5.0, STALE_S)


class Supervisor:
    """One worker process at a time, restarted when it dies, stopped with the server."""

    def __init__(self, db: Path | str, jobs: int, cell_timeout: float | None, total_timeout: float,
                 isolation: str | None, sources: dict[str, str] | None = None, scheduler: str | None = None):
        self.db, self.jobs, self.sources, self.scheduler = db, jobs, sources or {}, scheduler
        self.cell_timeout, self.total_timeout, self.isolation = cell_timeout, total_timeout, isolation
        self.proc: subprocess.Popen[bytes] | None = None
        self.lease = ""
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.restarts = 0
        self.store: Store | None = None  # (the watcher's own connection, opened once)

    def recover(self, dead: str = "") -> tuple[int, int]:
        """Jobs of leases that are gone (and of `dead`) back to the queue (or an error row)."""
        if self.store is None:
            self.store = Store(self.db)
        return self.store.recover(failure_report, dead)

    def _spawn(self) -> None:
        self.lease = new_lease()
        cmd = [sys.executable, "-m", "grader.service.worker", str(self.db), "--lease", self.lease,
               "--jobs", str(self.jobs), "--total-timeout", str(self.total_timeout)]
        if self.cell_timeout is not None:
            cmd += ["--cell-timeout", str(self.cell_timeout)]
        if self.isolation:
            cmd += ["--isolation", self.isolation]
        if self.scheduler:
            cmd += ["--scheduler", self.scheduler]
        for asg, source in self.sources.items():
            cmd += ["--assignment", f"{asg}={source}"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)

    def start(self) -> None:
        """Take back what earlier runs held, then start the worker (if any) and the watcher."""
        self.recover()
        if self.jobs > 0:
            self._spawn()
        self.thread = threading.Thread(target=self._watch, name="grader-worker-watch", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        waited = 0.0
        while not self.stopping.is_set():
            proc = self.proc
            if proc is None or proc.poll() is None:
                self.stopping.wait(0.5)
                waited += 0.5
                if waited >= RECOVER_S:  # (workers of other processes and hosts that are gone)
                    waited = 0.0
                    try:
                        self.recover()
                    except Exception as e:  # (the database away a moment: the next round tries again)
                        sys.stderr.write(f"grade serve: could not look for stopped workers: {e}\n")
                continue
            # the worker died (a crash, an OOM kill, kill -9): its jobs go back, once at most
            dead, self.lease = self.lease, ""
            self.recover(dead)
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
        if self.thread is not None:
            self.thread.join(10)
        if self.store is not None:
            self.store.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
