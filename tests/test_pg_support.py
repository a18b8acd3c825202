"""The PostgreSQL fixtures: a private server on loopback, a fresh empty database per test, and the
row locking the service's job queue relies on."""

from __future__ import annotations

import os
from collections.abc import Callable

import psycopg
import pytest

from tests.pg_support import MAX_CONNECTIONS, PostgresServer

USER_TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"


def test_server_is_private_and_reachable_at_the_url(postgres_server: PostgresServer, pg_url: str) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/t_")
    with psycopg.connect(pg_url) as conn:
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                    for name in ("listen_addresses", "unix_socket_directories", "max_connections", "fsync")}
        assert conn.execute("SELECT current_database()").fetchone()[0] == pg_url.rsplit("/", 1)[1]
    assert settings == {"listen_addresses": "127.0.0.1",
                        "unix_socket_directories": str(postgres_server.folder),
                        "max_connections": str(MAX_CONNECTIONS), "fsync": "on"}
    # PostgreSQL refuses to run as root: as root (CI), the server runs as another user.
    if os.geteuid() == 0:
        assert os.stat(f"/proc/{postgres_server.proc.pid}").st_uid != 0


def test_each_database_is_new_and_empty(pg_url: str, make_pg_url: Callable[[], str]) -> None:
    other = make_pg_url()
    assert other != pg_url
    with psycopg.connect(pg_url) as a, psycopg.connect(other) as b:
        assert a.execute(USER_TABLES).fetchone()[0] == 0
        assert b.execute(USER_TABLES).fetchone()[0] == 0
        a.execute("CREATE TABLE jobs (id int PRIMARY KEY)")
        a.commit()
        assert a.execute(USER_TABLES).fetchone()[0] == 1
        assert b.execute(USER_TABLES).fetchone()[0] == 0


def test_a_database_still_in_use_is_dropped(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    with psycopg.connect(postgres_server.url(name)) as held:
        held.execute("SELECT 1")
        postgres_server.drop_database(name)
        with psycopg.connect(postgres_server.url()) as conn:
            assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                                (name,)).fetchone()[0] == 0
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")  # FORCE ended this session


def test_skip_locked_hands_each_row_to_one_transaction(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE jobs (id int PRIMARY KEY)")
        conn.execute("INSERT INTO jobs VALUES (1), (2)")
    claim = "SELECT id FROM jobs ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
    with psycopg.connect(pg_url) as first, psycopg.connect(pg_url) as second:
        assert first.execute(claim).fetchone() == (1,)
        assert second.execute(claim).fetchone() == (2,)  # row 1 is held: skipped, not waited for
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.execute("SELECT id FROM jobs WHERE id = 1 FOR UPDATE NOWAIT")
        second.rollback()
        first.rollback()  # row 1 released: the next claim gets it
        assert second.execute(claim).fetchone() == (1,)
