"""A throw-away PostgreSQL server for integration tests (the machine's server binaries).

Fixtures
    ``postgres_server`` (session): a :class:`PostgresServer` running on a free 127.0.0.1 port,
    its cluster created with ``initdb`` in a temporary directory (trust authentication, user
    ``postgres``, Unix socket in the same directory). Stopped and removed at the end.
    ``postgres_dsn`` (session): that server's DSN for the ``postgres`` database,
    ``postgresql://postgres@127.0.0.1:PORT/postgres``.
    ``pg_database`` (function): a fresh, empty database for one test; yields its DSN.

Binaries come from ``$CDCFLOW_PG_BINDIR``, ``pg_config --bindir``, ``/usr/lib/postgresql/*/bin``
(newest first) or ``PATH`` (``make test`` installs the ``postgresql-15`` package when missing).

PostgreSQL refuses to run as root: when the tests run as root the cluster directory is created
outside pytest's (root-only) temporary directory and the server runs as the unprivileged user
``$CDCFLOW_PG_USER`` (default ``nobody``), through ``setpriv``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port, unique_database_name, wait_until_ready


def postgres_bindir() -> Path:
    """The directory holding ``initdb`` and ``postgres``."""
    configured = os.environ.get("CDCFLOW_PG_BINDIR")
    candidates: list[Path] = [Path(configured)] if configured else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
            candidates.append(Path(out))
        except (subprocess.SubprocessError, OSError):
            pass
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) were not found: install the Debian "
        "package postgresql-15 (make test does) or set CDCFLOW_PG_BINDIR"
    )


def _privilege_drop() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs a program as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return [], None
    name = os.environ.get("CDCFLOW_PG_USER", "nobody")
    user = pwd.getpwnam(name)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root needs setpriv (util-linux) to start PostgreSQL")
    return (
        [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--"],
        user,
    )


class PostgresServer:
    """One PostgreSQL cluster in ``base_dir``; ``start``/``stop`` may be called repeatedly."""

    def __init__(self, base_dir: Path, log_dir: Path, port: int | None = None) -> None:
        self.bindir = postgres_bindir()
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "sock"
        self.log_dir = log_dir
        self.port = port or free_port()
        self.prefix, self.user = _privilege_drop()
        self._process: ServerProcess | None = None

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database (TCP, trust authentication)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        """DSN of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        """Create the cluster (``initdb``) with settings suited to tests."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.user is not None:
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        result = subprocess.run(
            [
                *self.prefix,
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.base_dir,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        argv = [
            *self.prefix,
            str(self.bindir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
        ]
        self._process = ServerProcess(
            "postgres", argv, self.log_dir / f"postgres-{self.port}.log", cwd=self.base_dir
        )
        self._process.start(port=self.port, timeout=60)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        def probe() -> None:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")

        wait_until_ready(
            probe,
            (psycopg.OperationalError,),
            "PostgreSQL did not accept connections",
            self.tail,
            timeout,
        )

    def stop(self) -> None:
        """Stop the server: fast shutdown (SIGINT: abort sessions), SIGKILL as a last resort."""
        if self._process is None:
            return
        process = self._process.process
        if process is not None and process.poll() is None:
            try:
                os.kill(process.pid, signal.SIGINT)
                process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self._process.stop(timeout=10)
        self._process = None

    def tail(self) -> str:
        """The end of the server log."""
        return self._process.tail() if self._process is not None else ""

    def create_database(self, name: str | None = None) -> str:
        """Create a database (a unique name when none is given); returns its DSN."""
        import psycopg

        name = name or unique_database_name()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def remove(self) -> None:
        """Delete the cluster directory."""
        shutil.rmtree(self.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (see the module docstring)."""
    log_dir = tmp_path_factory.mktemp("postgres-logs")
    if os.geteuid() == 0:
        # pytest's temporary root is private to root; the server user must reach its files.
        base = Path(tempfile.mkdtemp(prefix="cdcflow-pg-"))
    else:
        base = tmp_path_factory.mktemp("postgres")
    server = PostgresServer(base, log_dir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture(scope="session")
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """DSN of the session server's ``postgres`` database."""
    return postgres_server.dsn


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> str:
    """A fresh empty database for one test; yields its DSN."""
    return postgres_server.create_database()
