"""A real grading service for the tests: `grade serve` in a subprocess on a free loopback port,
its own database (a SQLite file, or a PostgreSQL URL), a roster of students and an instructor
with their tokens; and `grade worker` processes beside it."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from grader.service import people
from grader.service.store import Store
from tests.batch_support import ASSIGNMENT, notebook_bytes
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One running service and who may use it."""

    folder: Path
    students: list[str]
    config: str = ""
    jobs: int = 1
    total_timeout: float = 60.0
    cell_timeout: float = 10.0
    assignment: str = ASSIGNMENT  # an id, or an assignment's folder
    port: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    database: str = ""  # a PostgreSQL URL (default: service.sqlite in the folder)
    extra: list[str] = field(default_factory=list)  # more `grade serve` options
    name: str = "server"

    @property
    def db(self) -> Path | str:
        return self.database or self.folder / "service.sqlite"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def setup(self) -> Server:
        roster = self.folder / "roster.csv"
        roster.write_text("id,name\n" + "".join(f"{s},Student {s}\n" for s in self.students), encoding="utf-8")
        store = Store(self.db)
        self.tokens = {i.user: i.token for i in people.import_roster(store, roster)}
        self.tokens["ta"] = people.add_instructor(store, "ta", "The TA").token
        store.close()
        if self.config:
            (self.folder / "service.toml").write_text(self.config, encoding="utf-8")
        return self

    def start(self) -> Server:
        self.port = self.port or free_port()
        cmd = [sys.executable, "-m", "grader.cli", "serve", "-a", self.assignment, "--db", str(self.db),
               "--port", str(self.port), "--jobs", str(self.jobs), "--timeout", str(self.cell_timeout),
               "--total-timeout", str(self.total_timeout)]
        if self.config:
            cmd += ["--config", str(self.folder / "service.toml")]
        cmd += self.extra
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = self.folder / f"{self.name}.log"
        self.proc = subprocess.Popen(cmd, cwd=self.folder, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(log, "ab"), start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        if sig == signal.SIGKILL and self.proc is not None:
            # (its worker dies with it, by PR_SET_PDEATHSIG; wait until it has)
            wait_for(lambda: not worker_pids(self.db), 30)

    def api(self, who: str) -> httpx.Client:
        """An API client with `who`'s bearer token."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[who]}"}, timeout=30)

    def browser_session(self, who: str) -> tuple[httpx.Client, str]:
        """A cookie session logged in through the login form, and its CSRF token (from a page)."""
        c = httpx.Client(base_url=self.url, timeout=30)
        r = c.get("/login")
        pre = r.text.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/login", data={"token": self.tokens[who], "csrf": pre})
        assert r.status_code == 303, r.text
        page = c.get("/").text
        return c, page.split('name="csrf" value="')[1].split('"')[0]

    def submit(self, who: str, kind: str = "correct", data: bytes | None = None, name: str = "hw.ipynb") -> dict:
        with self.api(who) as c:
            r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions",
                       files={"file": (name, data if data is not None else notebook_bytes(kind, who))})
        assert r.status_code == 202, r.text
        return r.json()

    def wait_done(self, who: str, attempt: int, timeout: float = 240) -> dict:
        with self.api(who) as c:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                s = c.get(f"/api/submissions/{attempt}").json()
                if s["state"] == "done":
                    return s
                time.sleep(0.5)
        raise TimeoutError(f"attempt {attempt} not graded in {timeout} s")

    def rows(self, query: str) -> list[tuple]:
        return rows(self.db, query)


def rows(db: Path | str, query: str) -> list[tuple]:
    """A query's rows, read by a connection of the test's own."""
    if isinstance(db, str):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute(query).fetchall()
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def start_worker(folder: Path, db: Path | str, *args: str, name: str = "worker") -> subprocess.Popen:
    """`grade worker` on the database, in a session of its own; ready when its lease is registered."""
    before = {r[0] for r in rows(db, "SELECT lease FROM workers")}
    cmd = [sys.executable, "-m", "grader.cli", "worker", "-a", ASSIGNMENT, "--db", str(db), *args]
    proc = subprocess.Popen(cmd, cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=open(folder / f"{name}.log", "ab"), start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((folder / f"{name}.log").read_text())
        if {r[0] for r in rows(db, "SELECT lease FROM workers")} - before:
            return proc
        time.sleep(0.2)
    raise RuntimeError("the worker did not start")


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError("condition not reached")


def worker_pids(db: Path) -> list[int]:
    """The grading workers of this database still alive (from /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"grader.service.worker" in cmd and str(db).encode() in cmd:
                out.append(int(p.name))
    return out
