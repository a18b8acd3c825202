"""A real, private PostgreSQL server for the tests, and a fresh empty database per test.

`postgres_server` (one per test session, so one per xdist worker): `initdb` into a new temporary
folder, then `postgres` listening only on 127.0.0.1 on a free port, its unix socket in that
folder, trust authentication, default durability (fsync on). It is stopped (fast shutdown) and
its folder removed at the end of the session. `pg_url`: a new database on it for one test, as a
`postgresql://postgres@127.0.0.1:PORT/NAME` URL, dropped afterwards. `make_pg_url`: more of them.

PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user
(`nobody` if there is none), and its folder sits where that user can reach it.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SUPERUSER = "postgres"  # the cluster's superuser role (initdb -U), whoever runs the server
MAX_CONNECTIONS = 200  # the service, its workers and the test itself, each with a few connections
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
MISSING = ("PostgreSQL server binaries (initdb, postgres) not found on PATH or under "
           "/usr/lib/postgresql/*/bin: `bash .ci/setup` installs them")


def find_bin_dir() -> Path | None:
    """The folder of `initdb` and `postgres`: from PATH, else the newest /usr/lib/postgresql/N/bin."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        # /usr/local/bin/initdb may be a symlink: the real folder also holds `postgres`.
        candidates.append(Path(on_path).resolve().parent)
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "postgres")):
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _owner() -> pwd.struct_passwd | None:
    """The unprivileged user to run the cluster as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    pytest.fail("running as root, and neither a `postgres` nor a `nobody` user exists to run "
                "PostgreSQL as (it refuses to run as root)", pytrace=False)


def _base_dir(owner: pwd.struct_passwd | None) -> str:
    """Where to make the cluster's folder: the temp folder, unless another user cannot reach it
    (a 0700 parent) or its path is too long for a unix socket path (about 107 bytes); then /tmp."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        return "/tmp"
    if owner is not None:
        for folder in [Path(base), *Path(base).parents]:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return "/tmp"
    return base


def _die_with_parent() -> Callable[[], None] | None:
    """For the server's process (run between fork and exec): quit (SIGQUIT: immediate shutdown)
    when the test process dies without stopping it, so no server outlives a killed session.
    prctl is looked up here, before the fork: the child only calls it."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG; kept across the setuid before it


@dataclass
class PostgresServer:
    """One running PostgreSQL cluster on loopback, private to this test session."""

    bin_dir: Path
    folder: Path  # the data folder's parent, also the unix socket's folder
    owner: pwd.struct_passwd | None = None
    port: int = 0
    proc: subprocess.Popen | None = None

    host = "127.0.0.1"
    user = SUPERUSER

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def _run_as_owner(self) -> dict[str, Any]:
        """subprocess arguments that run the child as the cluster's owner, in its folder."""
        kw: dict[str, Any] = {"cwd": self.folder}
        if self.owner is not None:
            kw.update(user=self.owner.pw_uid, group=self.owner.pw_gid, extra_groups=[])
        return kw

    def init(self) -> None:
        if self.owner is not None:
            os.chown(self.folder, self.owner.pw_uid, self.owner.pw_gid)
        cmd = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
               "-E", "UTF8", "--locale=C"]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              **self._run_as_owner())
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}")

    def start(self) -> None:
        # A free port can be taken by another process (another xdist worker's server) before the
        # server binds it: try again on a new port.
        for _ in range(5):
            self.port = free_port()
            if self._start_on_port():
                return
        raise RuntimeError(f"PostgreSQL did not start:\n{self.log_tail()}")

    def _start_on_port(self) -> bool:
        import psycopg

        cmd = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
               "-c", f"listen_addresses={self.host}", "-c", f"unix_socket_directories={self.folder}",
               "-c", f"max_connections={MAX_CONNECTIONS}"]
        with open(self.log, "ab") as log:
            offset = log.tell()
            # Its own session: a ^C in the terminal reaches pytest, which stops the server itself.
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, preexec_fn=_die_with_parent(),
                                         **self._run_as_owner())
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if b"Address already in use" in self.log.read_bytes()[offset:]:
                    return False
                raise RuntimeError(f"PostgreSQL exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"PostgreSQL did not accept connections in {START_TIMEOUT:.0f} s:\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients disconnected, a clean checkpoint); harder if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)):
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def create_database(self) -> str:
        """A new, empty database; its name."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it; failures are ignored."""
        import psycopg

        assert re.fullmatch(r"\w+", name)
        try:
            with psycopg.connect(self.url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            pass


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for this session (this xdist worker)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail(MISSING, pytrace=False)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: `bash .ci/setup` installs it (the postgres extra)",
                    pytrace=False)
    owner = _owner()
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="nngrader-pg-", dir=_base_dir(owner))),
                            owner)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def make_pg_url(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """Make a fresh, empty database on the session's server and return its URL (any number of
    them); every one is dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(postgres_server.create_database())
        return postgres_server.url(made[-1])

    yield make
    for name in made:
        postgres_server.drop_database(name)


@pytest.fixture
def pg_url(make_pg_url: Callable[[], str]) -> str:
    """The URL of a fresh, empty database for this test (dropped after it)."""
    return make_pg_url()
