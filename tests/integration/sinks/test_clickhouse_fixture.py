"""The ClickHouse session fixture starts a usable, isolated server."""

from __future__ import annotations

import pytest
from clickhouse_driver import Client

from tests.servers.clickhouse import ClickHouseServer

pytestmark = pytest.mark.integration


def test_server_answers_on_its_own_port(clickhouse_server: ClickHouseServer) -> None:
    client = Client(host="127.0.0.1", port=clickhouse_server.tcp_port)
    try:
        version = client.execute("SELECT version()")[0][0]
        rows = client.execute("SELECT number FROM system.numbers LIMIT 3")
    finally:
        client.disconnect()
    assert version.split(".")[0].isdigit()
    assert rows == [(0,), (1,), (2,)]


def test_ch_database_is_fresh(clickhouse_server: ClickHouseServer, ch_database: str) -> None:
    name = ch_database.rsplit("/", 1)[1]
    client = Client(host="127.0.0.1", port=clickhouse_server.tcp_port, database=name)
    try:
        assert client.execute("SHOW TABLES") == []
        client.execute("CREATE TABLE t (id UInt64, v String) ENGINE = MergeTree ORDER BY id")
        client.execute("INSERT INTO t (id, v) VALUES", [(1, "a"), (2, "b")])
        assert client.execute("SELECT count() FROM t") == [(2,)]
    finally:
        client.disconnect()
