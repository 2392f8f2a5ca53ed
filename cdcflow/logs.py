"""Logging setup: plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import time


class JsonFormatter(logging.Formatter):
    """Format records as JSON objects with ``ts``, ``level``, ``logger`` and ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one JSON object (no trailing newline)."""
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class DropImportNoise(logging.Filter):
    """Drop Beam's import-time warning about missing Google Cloud client libraries.

    Importing ``apache_beam`` logs "apitools not found ..." on the root logger when the GCP
    extras are absent; cdcflow uses no GCP I/O, so the line is noise on every run.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the Beam import warning, True for everything else."""
        return not str(record.msg).startswith("apitools not found")


def configure_logging(fmt: str = "text", level: str = "warning") -> None:
    """Configure the root logger once for the CLI."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    handler.addFilter(DropImportNoise())
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
