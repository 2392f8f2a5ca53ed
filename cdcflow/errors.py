"""The exception hierarchy: one root, with configuration, decode and sink branches.

Retry policy is decided by type: anything deriving from :class:`TransientError` may be retried
with backoff, anything else is terminal (the record goes to the dead letters or the run stops).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


class CdcflowError(Exception):
    """Root of every error cdcflow raises on purpose."""


class ConfigError(CdcflowError):
    """A pipeline configuration is invalid; the message names the file, line and key."""


class DecodeError(CdcflowError):
    """A message could not be decoded into change events (terminal for that record)."""


def as_decode_error(exc: BaseException) -> DecodeError:
    """The :class:`DecodeError` that reports an unexpected exception raised by bad input.

    Codecs call it for whatever their parsers raise on hostile input (nesting too deep,
    invalid UTF-8, values of the wrong type), so that only a :class:`DecodeError` leaves a
    ``decode`` call. A :class:`DecodeError` is returned as it is.
    """
    if isinstance(exc, DecodeError):
        return exc
    if isinstance(exc, RecursionError):
        return DecodeError("the message is nested too deeply to decode")
    if isinstance(exc, UnicodeDecodeError):
        return DecodeError(f"the message is not valid UTF-8 ({exc.reason} at byte {exc.start})")
    return DecodeError(f"cannot decode the message ({type(exc).__name__}: {exc})")


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


def missing_extra(package: str, extra: str, component: str | None = None) -> MissingDependencyError:
    """Build the error raised when an optional connector package is not installed.

    The message names the package and the setup.py extra that provides it, and a command that
    works where cdcflow came from: in a checkout (cdcflow is not on a package index) the
    ``make`` target and the editable ``pip install`` of the checkout with that extra, using the
    interpreter that is running; otherwise ``pip install`` of the extra. ``component``
    (``"sink 'mirror'"``) prefixes the message when given.
    """
    python = shlex.quote(sys.executable or "python3")
    root = _checkout_root()
    if root is not None:
        target = "venv-flink" if extra == "flink" else "venv-all"
        spec = shlex.quote(f"{root}[{extra}]")
        how = f'run "make {target}" in {root}, or "{python} -m pip install -e {spec}"'
    else:
        how = f'run "{python} -m pip install ' + shlex.quote(f"cdcflow[{extra}]") + '"'
    prefix = f"{component}: " if component else ""
    return MissingDependencyError(
        f"{prefix}the {package!r} package is not installed; it is required for this "
        f"connector (cdcflow extra {extra!r}): {how}"
    )


def _checkout_root() -> Path | None:
    """The source checkout cdcflow runs from (editable install), or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    if (root / "setup.py").is_file() and (root / "Makefile").is_file():
        return root
    return None
