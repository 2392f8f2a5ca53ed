"""Real servers for integration tests, started by session fixtures on free 127.0.0.1 ports.

Each server module exposes a session-scoped pytest fixture; ``tests/conftest.py`` lists the
modules in ``pytest_plugins``. Helpers here: :func:`free_port`, :func:`wait_for_port`,
:func:`wait_until_ready` (retry a probe query), :func:`unique_database_name` and
:class:`ServerProcess` (start a process, wait until it listens, stop it and its children at the
end, keep its log for failure messages).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_database_counter = itertools.count()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def wait_until_ready(
    probe: Callable[[], object],
    errors: tuple[type[BaseException], ...],
    failure: str,
    tail: Callable[[], str],
    timeout: float = 30.0,
) -> None:
    """Call ``probe`` until it stops raising one of ``errors``.

    After ``timeout`` seconds raise ``RuntimeError`` with ``failure``, the last error and the
    server's log (``tail()``).
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except errors as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{failure}: {last}\n{tail()}")


def unique_database_name() -> str:
    """A database name no other test of this session uses (``t<n>_<random hex>``)."""
    return f"t{next(_database_counter)}_{uuid.uuid4().hex[:8]}"


class ServerProcess:
    """A server subprocess in its own process group, with its output in ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int | None = None, timeout: float = 60.0) -> ServerProcess:
        """Start the process; when ``port`` is given, wait until it listens there."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        if port is not None:
            try:
                wait_for_port(port, timeout)
            except TimeoutError as exc:
                self.stop()
                raise RuntimeError(f"{self.name} did not start: {exc}\n{self.tail()}") from exc
        return self

    def tail(self, lines: int = 40) -> str:
        """The end of the server's log, for error messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass
