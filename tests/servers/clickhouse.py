"""A throw-away ClickHouse server for integration tests (Debian's ``clickhouse-server``).

Fixtures
    ``clickhouse_server`` (session): a :class:`ClickHouseServer` started with a generated
    ``config.xml``/``users.xml`` in a temporary directory, listening on free 127.0.0.1 ports
    (native TCP and HTTP); stopped and removed at the end of the session.
    ``clickhouse_dsn`` (session): ``clickhouse://default@127.0.0.1:PORT/default``.
    ``ch_database`` (function): a fresh database for one test; yields its DSN.

The binary comes from ``$CDCFLOW_CLICKHOUSE_BIN``, ``clickhouse-server`` (Debian package
``clickhouse-server``, 18.16 on bookworm, installed by ``make test``) or ``clickhouse server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port, unique_database_name, wait_until_ready

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{base}/log/server.log</log>
        <errorlog>{base}/log/server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>{base}/data/</path>
    <tmp_path>{base}/tmp/</tmp_path>
    <user_files_path>{base}/user_files/</user_files_path>
    <format_schema_path>{base}/format_schemas/</format_schema_path>
    <users_config>{base}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def clickhouse_command() -> list[str]:
    """The command that starts a ClickHouse server (before ``--config-file``)."""
    configured = os.environ.get("CDCFLOW_CLICKHOUSE_BIN")
    if configured:
        return [configured]
    for name in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        found = shutil.which(name)
        if found:
            return [found]
    found = shutil.which("clickhouse")
    if found:
        return [found, "server"]
    raise RuntimeError(
        "the ClickHouse server was not found: install the Debian package clickhouse-server "
        "(make test does) or set CDCFLOW_CLICKHOUSE_BIN"
    )


class ClickHouseServer:
    """One ClickHouse server with its own config and data in ``base_dir``."""

    def __init__(self, base_dir: Path, log_dir: Path) -> None:
        self.base_dir = base_dir
        self.log_dir = log_dir
        self.tcp_port = free_port()
        self.http_port = free_port()
        while self.http_port == self.tcp_port:
            self.http_port = free_port()
        self._process: ServerProcess | None = None

    @property
    def dsn(self) -> str:
        """DSN of the ``default`` database."""
        return self.dsn_for("default")

    def dsn_for(self, database: str) -> str:
        """DSN of ``database`` on this server (native protocol)."""
        return f"clickhouse://default@127.0.0.1:{self.tcp_port}/{database}"

    def write_config(self) -> Path:
        """Write ``config.xml`` and ``users.xml``; returns the config path."""
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (self.base_dir / sub).mkdir(parents=True, exist_ok=True)
        values = {"base": self.base_dir, "tcp_port": self.tcp_port, "http_port": self.http_port}
        config = self.base_dir / "config.xml"
        config.write_text(_CONFIG.format(**values))
        (self.base_dir / "users.xml").write_text(_USERS)
        return config

    def start(self) -> None:
        """Start the server and wait until it answers queries."""
        config = self.write_config()
        argv = [*clickhouse_command(), f"--config-file={config}"]
        self._process = ServerProcess(
            "clickhouse", argv, self.log_dir / f"clickhouse-{self.tcp_port}.log", cwd=self.base_dir
        )
        self._process.start(port=self.tcp_port, timeout=60)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        from clickhouse_driver import Client
        from clickhouse_driver.errors import Error

        def probe() -> None:
            client = Client(host="127.0.0.1", port=self.tcp_port, connect_timeout=2)
            try:
                client.execute("SELECT 1")
            finally:
                client.disconnect()

        wait_until_ready(
            probe, (Error, OSError, EOFError), "ClickHouse did not answer", self.tail, timeout
        )

    def stop(self) -> None:
        """Stop the server."""
        if self._process is not None:
            self._process.stop(timeout=30)
            self._process = None

    def kill(self) -> None:
        """Kill the server with SIGKILL (a crash); ``start`` brings it back on the same ports."""
        if self._process is not None and self._process.process is not None:
            try:
                os.killpg(self._process.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._process.process.wait(timeout=30)
            self._process = None

    def tail(self) -> str:
        """The end of the server's output and error log."""
        parts = [self._process.tail() if self._process is not None else ""]
        err = self.base_dir / "log" / "server.err.log"
        if err.exists():
            parts.append("\n".join(err.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name when none is given); returns its DSN."""
        from clickhouse_driver import Client

        name = name or unique_database_name()
        client = Client(host="127.0.0.1", port=self.tcp_port)
        try:
            client.execute(f"CREATE DATABASE `{name}`")
        finally:
            client.disconnect()
        return self.dsn_for(name)

    def remove(self) -> None:
        """Delete the server's directory."""
        shutil.rmtree(self.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A ClickHouse server for the session (see the module docstring)."""
    log_dir = tmp_path_factory.mktemp("clickhouse-logs")
    base = Path(tempfile.mkdtemp(prefix="cdcflow-ch-", dir=tmp_path_factory.getbasetemp()))
    server = ClickHouseServer(base, log_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture(scope="session")
def clickhouse_dsn(clickhouse_server: ClickHouseServer) -> str:
    """DSN of the session server's ``default`` database."""
    return clickhouse_server.dsn


@pytest.fixture
def ch_database(clickhouse_server: ClickHouseServer) -> str:
    """A fresh database for one test; yields its DSN."""
    return clickhouse_server.create_database()
