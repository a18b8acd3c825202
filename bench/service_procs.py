"""The processes of the service's load test, on loopback, and the database's account of it.

`Cluster` starts `grade serve` web processes, `grade worker` processes, a Dask scheduler and its
workers (as tests/test_batch_dask.py's `loopback_cluster`: one thread each, no nanny), each in a
session of its own with its log in the run's folder, and stops every one of them when left
(SIGTERM, then SIGKILL to its process group), whatever ends the run. A process that exits
while starting (an option `grade serve` or `grade worker` does not take, a database it cannot
open) is a `Refused` carrying the last line of its log. The roster goes in through
`grade serve roster import`, which takes a SQLite path or a PostgreSQL URL alike.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.service.database import is_url  # noqa: E402
from tests.service_support import free_port  # noqa: E402

GRADE = [sys.executable, "-m", "grader.cli"]
DASK = str(Path(sys.executable).with_name("dask"))
START_S = 180.0  # a web process's start (imports, database) on a busy machine
WORKER_GRACE_S = 8.0  # a refused option ends `grade worker` well within this
STOP_S = 30.0
ROSTER_S = 900.0  # 2,000 students: two committed transactions each
STOP_ORDER = ("web", "worker", "dask-worker", "dask-scheduler")


class Refused(Exception):
    """A process would not start: one line saying which and why."""


@dataclass
class Proc:
    """One process this run started."""

    name: str
    what: str  # the command, without its arguments (a database URL may carry a password)
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def last_line(self) -> str:
        try:
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        return lines[-1] if lines else "(nothing in its log)"

    def refused(self) -> Refused:
        return Refused(f"{self.name} ({self.what}) exited with status {self.popen.returncode}: {self.last_line()}")


@dataclass
class Cluster:
    """Every process of one run; a context manager that stops them all on leaving."""

    folder: Path
    db: str
    procs: list[Proc] = field(default_factory=list)
    web: list[Proc] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    scheduler: str | None = None
    stopped: bool = False

    @property
    def env(self) -> dict[str, str]:
        # the clone's grader in every child; Dask workers may start processes of their own
        return {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.ports]

    def __enter__(self) -> Cluster:
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def spawn(self, name: str, cmd: list[str]) -> Proc:
        log = self.folder / "logs" / f"{name}.log"
        # a session of its own: Ctrl-C reaches this script only, which stops the rest in order
        with open(log, "ab") as err:  # (the child keeps its own copy)
            popen = subprocess.Popen(cmd, cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        proc = Proc(name, describe(cmd), popen, log)
        self.procs.append(proc)
        return proc

    def start_dask(self, workers: int) -> str:
        """A loopback scheduler and `workers` single-thread workers; its address once all joined."""
        if not Path(DASK).exists():
            raise Refused(f"no `dask` command beside {sys.executable}")
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        sched = self.spawn("dask-scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                              "--dashboard-address", "127.0.0.1:0"])
        for i in range(workers):
            self.spawn(f"dask-worker{i}", [DASK, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                                           "--local-directory", str(self.folder / f"dask-w{i}")])
        self._wait_dask(address, workers, sched)
        self.scheduler = address
        return address

    def _wait_dask(self, address: str, n: int, sched: Proc) -> None:
        from distributed import Client

        try:
            with Client(address, timeout="60s") as c:
                c.wait_for_workers(n, timeout=START_S)
        except Exception as e:  # (a worker that died, a scheduler that never listened)
            dead = [p for p in self.procs if p.name.startswith("dask") and not p.alive()]
            raise (dead[0].refused() if dead else Refused(f"the Dask cluster did not start: {e!r}")) from None
        if not sched.alive():
            raise sched.refused()

    def start_web(self, k: int, assignment: str, jobs: int, extra: list[str]) -> None:
        """`k` `grade serve` processes on free ports, each answering /api/health."""
        for i in range(k):
            port = free_port()
            self.ports.append(port)
            self.web.append(self.spawn(f"web{i}", [*GRADE, "serve", "-a", assignment, "--db", self.db,
                                                   "--host", "127.0.0.1", "--port", str(port),
                                                   "--jobs", str(jobs), *extra]))
        for proc, url in zip(self.web, self.urls):
            wait_healthy(proc, url)

    def start_workers(self, w: int, assignment: str, jobs: int, extra: list[str]) -> None:
        """`w` `grade worker` processes; refused when one exits within the grace period."""
        cmd = [*GRADE, "worker", "-a", assignment, "--db", self.db, "--jobs", str(jobs), *extra]
        if self.scheduler:
            cmd += ["--scheduler", self.scheduler]
        started = [self.spawn(f"worker{i}", cmd) for i in range(w)]
        end = time.monotonic() + WORKER_GRACE_S
        while time.monotonic() < end:
            for p in started:
                if not p.alive():
                    raise p.refused()
            time.sleep(0.2)

    def dead(self) -> list[Proc]:
        return [p for p in self.procs if not p.alive()]

    def crippled(self) -> str:
        """Why the service can no longer grade or answer ("" while it can): every process of a
        tier it needs has exited (a web process restarts its own worker; nothing restarts these)."""
        for t in STOP_ORDER:
            procs = [p for p in self.procs if tier(p) == STOP_ORDER.index(t)]
            if procs and not any(p.alive() for p in procs):
                return f"every {t} process has exited ({procs[0].name}: {procs[0].last_line()})"
        return ""

    def stop(self) -> None:
        """Stop every process, a tier at a time (web processes, grading workers, Dask workers,
        the scheduler: each tier's work ends before what it relies on): SIGTERM, then SIGKILL
        to the process group of any still running."""
        if self.stopped:
            return
        self.stopped = True
        for t in sorted({tier(p) for p in self.procs}):
            stop_all([p for p in self.procs if tier(p) == t])


def describe(cmd: list[str]) -> str:
    """`grade serve`, `grade worker`, `dask scheduler`...: a command without its arguments."""
    words = ["grade", cmd[len(GRADE)]] if cmd[:len(GRADE)] == GRADE else [Path(cmd[0]).name, cmd[1]]
    return f"`{' '.join(words)}`"


def tier(p: Proc) -> int:
    """Its place in the order of stopping (a name of no tier: last)."""
    name = p.name.rstrip("0123456789")
    return STOP_ORDER.index(name) if name in STOP_ORDER else len(STOP_ORDER)


def stop_all(procs: list[Proc]) -> None:
    for p in procs:
        if p.alive():
            p.popen.terminate()
    end = time.monotonic() + STOP_S
    for p in procs:
        try:
            p.popen.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(p)
        _kill_group(p, only_stragglers=True)


def _kill_group(p: Proc, only_stragglers: bool = False) -> None:
    """SIGKILL to the process group the run started (what is left of it: kernels), then reap
    the process (only_stragglers: it has already ended)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    if not only_stragglers:
        with contextlib.suppress(subprocess.TimeoutExpired):  # (stuck in the kernel: the rest go on)
            p.popen.wait(STOP_S)


def wait_healthy(proc: Proc, url: str) -> None:
    end = time.monotonic() + START_S
    while time.monotonic() < end:
        if not proc.alive():
            raise proc.refused()
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise Refused(f"{proc.name} did not answer /api/health within {START_S:g} s: {proc.last_line()}")


def import_roster(folder: Path, db: str, students: list[str]) -> dict[str, str]:
    """student -> token, through `grade serve roster import` (it prints id, name and link)."""
    roster = folder / "roster.csv"
    roster.write_text("id,name\n" + "".join(f"{s},Student {s}\n" for s in students), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        r = subprocess.run([*GRADE, "serve", "roster", "import", str(roster), "--db", db], cwd=folder, env=env,
                           capture_output=True, text=True, timeout=ROSTER_S)
    except subprocess.TimeoutExpired:
        raise Refused(f"the roster import took over {ROSTER_S:g} s") from None
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise Refused(f"grade serve roster import exited with status {r.returncode}: {last}")
    tokens = {}
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            tokens[parts[0]] = token_of(parts[2])
    missing = [s for s in students if s not in tokens]
    if missing:
        raise Refused(f"the roster import issued no link for {len(missing)} students (first {missing[0]})")
    return tokens


def token_of(link: str) -> str:
    """The token in a personal link: after `#` (today's links), or its `t=` parameter."""
    if "#" in link:
        return link.split("#", 1)[1]
    return parse_qs(urlsplit(link).query)["t"][0]


# ---------------------------------------------------------------- the database's account

SAFE = re.compile(r"^[A-Za-z0-9-]+$")  # (no LIKE wildcard, no quote)


def query(db: str, sql: str) -> list[tuple]:
    """Rows of a read-only query on the service's database (SQLite path or PostgreSQL URL)."""
    if is_url(db):
        import psycopg

        with psycopg.connect(db, connect_timeout=30) as c:
            return c.execute(sql).fetchall()
    c = sqlite3.connect(f"file:{Path(db).resolve()}?mode=ro", uri=True, timeout=30)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def stored_attempts(db: str, prefix: str) -> list[int]:
    """Ids of the attempts of this run's students (their ids all start with `prefix`)."""
    assert SAFE.match(prefix)  # (spliced into the query: two databases, two placeholder styles)
    return [int(a) for (a,) in query(db, f"SELECT id FROM attempts WHERE user_id LIKE '{prefix}%'")]


def finish_times(db: str, first: int) -> dict[int, list[float]]:
    """attempt id -> the finish time (seconds since the epoch) of each of its results, for the
    attempts from `first` on: exactly one each when nothing was lost or graded twice."""
    rows = query(db, "SELECT j.attempt_id, r.finished FROM jobs j JOIN results r ON r.job_id = j.id"
                     f" WHERE j.attempt_id >= {int(first)}")
    out: dict[int, list[float]] = {}
    for aid, finished in rows:
        out.setdefault(int(aid), []).append(float(finished))
    return out
