"""Retrying transient sink failures with exponential backoff and jitter.

A sink wraps each batch write in :func:`call_with_retry` with a *classifier* that says whether
an exception is transient (lost connection, deadlock, serialization failure, ClickHouse
``TOO_MANY_PARTS``...). A transient failure is retried after a pause of
``initial_backoff_s * multiplier ** (attempt - 1)`` seconds, capped at ``max_backoff_s``, with
"full jitter" (a uniformly random pause between ``(1 - jitter)`` and ``1`` times that); the
``on_retry`` hook lets the sink reset its connection first. After ``max_attempts`` attempts the
last error is raised as :class:`~cdcflow.errors.TransientSinkError`, so the pipeline stops; since
every attempt is atomic (or idempotent) nothing is committed past the failed batch. Anything the
classifier does not call transient propagates at once.

The classifiers for PostgreSQL (psycopg 3) and ClickHouse (clickhouse-driver) live here too; they
import nothing and only look at exception types, SQLSTATEs and server error codes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cdcflow.errors import TransientError, TransientSinkError

log = logging.getLogger(__name__)

T = TypeVar("T")
Classifier = Callable[[BaseException], bool]


class RetryPolicy(BaseModel):
    """``retry:`` options of a sink (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Attempts in total, the first included (1 = never retry).
    max_attempts: int = Field(default=6, ge=1, le=100)
    #: Pause before the first retry, in seconds.
    initial_backoff_s: float = Field(default=0.5, ge=0, le=600)
    #: Upper bound of any pause, in seconds.
    max_backoff_s: float = Field(default=30.0, ge=0, le=3600)
    #: Growth factor of the pause per attempt.
    multiplier: float = Field(default=2.0, ge=1, le=10)
    #: Fraction of the pause that is randomised (0 = none, 1 = full jitter).
    jitter: float = Field(default=1.0, ge=0, le=1)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)


def call_with_retry(
    operation: Callable[[], T],
    is_transient: Classifier,
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``operation``; retry it while it fails transiently (see the module docstring).

    ``what`` names the work in log lines and in the final error (``sink 'wh': write of
    orders.jsonl/0 up to offset 41``). ``on_retry`` runs after a transient failure, before the
    pause (reset connections there); if it fails transiently itself the attempt counts as failed.
    """
    attempt = 0
    started = time.monotonic()
    while True:
        attempt += 1
        try:
            return operation()
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not _transient(
                exc, is_transient
            ):
                raise
            if attempt >= policy.max_attempts:
                elapsed = time.monotonic() - started
                raise TransientSinkError(
                    f"{what}: giving up after {attempt} attempt{'s' if attempt > 1 else ''} "
                    f"in {elapsed:.1f}s; last error: {_describe(exc)}"
                ) from exc
            pause = policy.backoff(attempt)
            log.warning(
                "%s: transient failure (attempt %d of %d), retrying in %.2fs: %s",
                what,
                attempt,
                policy.max_attempts,
                pause,
                _describe(exc),
            )
            if on_retry is not None:
                try:
                    on_retry(exc)
                except BaseException as reset_error:
                    if not _transient(reset_error, is_transient):
                        raise
            sleep(pause)


def _transient(exc: BaseException, is_transient: Classifier) -> bool:
    if isinstance(exc, TransientError):
        return True
    return bool(is_transient(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# -- PostgreSQL (psycopg 3) -----------------------------------------------------------------------

#: SQLSTATE classes and codes that a retry can fix.
PG_TRANSIENT_CLASSES = frozenset({"08", "53", "57", "58"})
PG_TRANSIENT_CODES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available
        "55006",  # object_in_use
        "57014",  # query_canceled (statement timeout)
        "25006",  # read_only_sql_transaction (failover to a standby in progress)
    }
)
#: Within class 57, errors that are not worth retrying.
PG_TERMINAL_CODES = frozenset({"57000"})


def postgres_is_transient(exc: BaseException) -> bool:
    """True for psycopg errors a retry can fix.

    Lost connections, deadlocks, serialization failures, server shutdown or start-up, resource
    exhaustion.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        if sqlstate in PG_TERMINAL_CODES:
            return False
        return sqlstate in PG_TRANSIENT_CODES or sqlstate[:2] in PG_TRANSIENT_CLASSES
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__ or ""
    if module.startswith("psycopg") and names & {"OperationalError", "InterfaceError"}:
        # No SQLSTATE: the connection broke (server gone, socket closed, network down).
        return True
    return isinstance(exc, (ConnectionError, TimeoutError))


# -- ClickHouse (clickhouse-driver) ---------------------------------------------------------------

#: Server error codes a retry can fix.
CLICKHOUSE_TRANSIENT_CODES = frozenset(
    {
        95,  # CANNOT_READ_FROM_SOCKET
        96,  # CANNOT_WRITE_TO_SOCKET
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY (replica read-only for a while)
        173,  # CANNOT_ALLOCATE_MEMORY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        999,  # KEEPER_EXCEPTION
    }
)


def clickhouse_is_transient(exc: BaseException) -> bool:
    """True for clickhouse-driver errors a retry can fix.

    Network errors, timeouts, ``TOO_MANY_PARTS``, memory limits, too many simultaneous queries.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"NetworkError", "SocketTimeoutError", "UnexpectedPacketFromServerError"}:
        return True
    code = getattr(exc, "code", None)
    if isinstance(code, int) and "ServerException" in names:
        return code in CLICKHOUSE_TRANSIENT_CODES
    return isinstance(exc, (ConnectionError, TimeoutError, EOFError, BrokenPipeError))
