"""The exception hierarchy: one root, with configuration, decode and sink branches.

Retry policy is decided by type: anything deriving from :class:`TransientError` may be retried
with backoff, anything else is terminal (the record goes to the dead letters or the run stops).
"""

from __future__ import annotations


class CdcflowError(Exception):
    """Root of every error cdcflow raises on purpose."""


class ConfigError(CdcflowError):
    """A pipeline configuration is invalid; the message names the file, line and key."""


class DecodeError(CdcflowError):
    """A message could not be decoded into change events (terminal for that record)."""


class TransientError(CdcflowError):
    """A failure that may succeed when retried (lost connection, deadlock, throttling)."""


class TerminalError(CdcflowError):
    """A failure that retrying cannot fix."""


class SinkError(CdcflowError):
    """A sink could not write."""


class TransientSinkError(SinkError, TransientError):
    """A sink failure worth retrying."""


class RowRejectedError(SinkError, TerminalError):
    """A sink rejected one row (bad value, type mismatch): the row goes to the dead letters."""


class MissingDependencyError(CdcflowError, ImportError):
    """An optional package is missing; the message says which extra to install."""


def missing_extra(package: str, extra: str) -> MissingDependencyError:
    """Build the error raised when an optional connector package is not installed."""
    return MissingDependencyError(
        f"the {package!r} package is required for this connector: "
        f'run "pip install cdcflow[{extra}]"'
    )
