"""Logging setup for the CLI: plain text or one JSON object per line, always scrubbed.

Every line cdcflow writes to stderr goes through here: log records and the command's final
``error:`` line (:func:`error_line`), so both follow ``--log-format`` and both pass through
:func:`cdcflow.scrub.scrub` (no ``${...}`` value or connection-string password is printed).

Below ``--log-level debug``, Apache Beam's loggers are held at warning (their info level is
mostly type-hint and runner bookkeeping), and the warnings and errors they do log are shown
as their first line only, without tracebacks: the command's own ``error:`` line says what
failed. ``--log-level debug`` shows everything, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from cdcflow.scrub import scrub

#: Loggers of libraries that are quiet (warning) unless the level is debug.
NOISY_LOGGERS = ("apache_beam", "py4j")

_state: dict[str, Any] = {"format": "text", "debug": False}


def _timestamp(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """Format records as JSON objects with ``ts``, ``level``, ``logger`` and ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one scrubbed JSON object (no trailing newline)."""
        payload = {
            "ts": _timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        if record.exc_info:
            payload["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: message``, scrubbed (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as scrubbed text."""
        return scrub(super().format(record))


class DropImportNoise(logging.Filter):
    """Drop Beam's import-time warning about missing Google Cloud client libraries.

    Importing ``apache_beam`` logs "apitools not found ..." on the root logger when the GCP
    extras are absent; cdcflow uses no GCP I/O, so the line is noise on every run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the Beam import warning, True for everything else."""
        return not str(record.msg).startswith("apitools not found")


class ShortLibraryRecords(logging.Filter):
    """Below debug: a library's record becomes its first line, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Shorten records of :data:`NOISY_LOGGERS`; drop a failing step's report."""
        if _state["debug"] or not record.name.startswith(NOISY_LOGGERS):
            return True
        text = record.getMessage()
        if "[while running '" in text:
            # A step's exception, logged by the runner as it fails the run: the command's
            # final error line reports it (naming the component).
            return False
        first = text.strip().splitlines()[0] if text.strip() else text
        if first != text or record.exc_info:
            record.msg = f"{first} (details with --log-level debug)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def configure_logging(fmt: str = "text", level: str = "warning") -> None:
    """Configure the root logger once for the CLI (see the module docstring)."""
    _state["format"] = fmt
    _state["debug"] = level.lower() == "debug"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(DropImportNoise())
    handler.addFilter(ShortLibraryRecords())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if _state["debug"] else logging.WARNING)


def json_logs() -> bool:
    """True when the CLI runs with ``--log-format json``."""
    return _state["format"] == "json"


def debug_enabled() -> bool:
    """True when the CLI runs with ``--log-level debug``."""
    return bool(_state["debug"])


def error_line(message: str) -> str:
    """The final ``error: ...`` line of a failed command, in the configured log format.

    Text: ``error: MESSAGE`` (a configuration error's problem list follows on the next lines).
    JSON: one object with ``level`` ``error``, ``logger`` ``cdcflow`` and ``message``.
    Scrubbed either way.
    """
    text = scrub(message)
    if _state["format"] != "json":
        return f"error: {text}"
    now = time.time()
    payload = {
        "ts": _timestamp(now, (now % 1) * 1000),
        "level": "error",
        "logger": "cdcflow",
        "message": text,
    }
    return json.dumps(payload)
