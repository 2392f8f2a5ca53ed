"""The PostgreSQL session fixture starts a usable, isolated server."""

from __future__ import annotations

import psycopg
import pytest

from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.integration


def test_server_accepts_sql_on_its_own_port(
    postgres_server: PostgresServer, postgres_dsn: str
) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        port = conn.execute("SHOW port").fetchone()
    assert version is not None and int(version[0]) >= 120000
    assert port is not None and int(port[0]) == postgres_server.port


def test_pg_database_is_fresh_and_writable(pg_database: str, postgres_dsn: str) -> None:
    assert pg_database != postgres_dsn
    with psycopg.connect(pg_database) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert tables == (0,)
