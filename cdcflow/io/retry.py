"""Retrying transient sink failures with exponential backoff and jitter.

A sink wraps each batch write in :func:`call_with_retry` with a *classifier* that says whether
an exception is transient (lost connection, deadlock, serialization failure, ClickHouse
``TOO_MANY_PARTS``...). A transient failure is retried after a pause of
``initial_backoff_s * multiplier ** (attempt - 1)`` seconds, capped at ``max_backoff_s``, with
"full jitter" (a uniformly random pause between ``(1 - jitter)`` and ``1`` times that); the
``on_retry`` hook lets the sink reset its connection first. Anything the classifier does not call
transient propagates at once.

How long a transient failure is retried depends on the run:

- runs that end (``--until-caught-up``, file sources): ``max_attempts`` attempts, each failure
  logged as a warning;
- streaming runs (``streaming=True``): for ``streaming_span_s`` seconds from the first failure of
  the outage (default 300), however many attempts that takes. One warning when the outage starts,
  one progress warning every :data:`PROGRESS_EVERY_S` seconds, one info line when the work
  succeeds again.

When the limit is reached the last error is raised as :class:`~cdcflow.errors.TransientSinkError`
naming the work (``sink 'wh': write of ...``), so the pipeline stops; since every attempt is
atomic (or idempotent) nothing is committed past the failed batch.

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
    #: In a streaming run: seconds an outage is retried (from its first failure) before giving up.
    streaming_span_s: float = Field(default=300.0, ge=0, le=7 * 86400)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        draw = (rng or random).random()
        return base * (1.0 - self.jitter * draw)


#: Seconds between the progress warnings of a streaming outage.
PROGRESS_EVERY_S = 30.0


def call_with_retry(
    operation: Callable[[], T],
    is_transient: Classifier,
    policy: RetryPolicy,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    streaming: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``operation``; retry it while it fails transiently (see the module docstring).

    ``what`` names the work in log lines and in the final error (``sink 'wh': write of
    orders.jsonl/0 up to offset 41``). ``on_retry`` runs after a transient failure, before the
    pause (reset connections there); if it fails transiently itself the attempt counts as failed.
    ``streaming`` bounds the retries by ``policy.streaming_span_s`` instead of
    ``policy.max_attempts``.
    """
    attempt = 0
    started = clock()
    next_progress = started + PROGRESS_EVERY_S
    while True:
        attempt += 1
        try:
            result = operation()
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or not _transient(
                exc, is_transient
            ):
                raise
            now = clock()
            elapsed = now - started
            pause = policy.backoff(attempt)
            if streaming:
                left = policy.streaming_span_s - elapsed
                exhausted = left <= 0
                pause = min(pause, max(0.0, left))
            else:
                exhausted = attempt >= policy.max_attempts
            if exhausted:
                span = policy.streaming_span_s
                limit = f" (retry.streaming_span_s is {span:g}s)" if streaming else ""
                raise TransientSinkError(
                    f"{what}: giving up after {attempt} attempt{'s' if attempt > 1 else ''} "
                    f"in {elapsed:.1f}s{limit}; last error: {_describe(exc)}"
                ) from exc
            if not streaming:
                log.warning(
                    "%s: transient failure (attempt %d of %d), retrying in %.2fs: %s",
                    what,
                    attempt,
                    policy.max_attempts,
                    pause,
                    _describe(exc),
                )
            elif attempt == 1:
                log.warning(
                    "%s: transient failure, retrying for up to %gs: %s",
                    what,
                    policy.streaming_span_s,
                    _describe(exc),
                )
            elif now >= next_progress:
                next_progress = now + PROGRESS_EVERY_S
                log.warning(
                    "%s: still failing after %d attempts in %.0fs (giving up after %gs): %s",
                    what,
                    attempt,
                    elapsed,
                    policy.streaming_span_s,
                    _describe(exc),
                )
            else:
                log.debug("%s: attempt %d failed: %s", what, attempt, _describe(exc))
            if on_retry is not None:
                try:
                    on_retry(exc)
                except BaseException as reset_error:
                    if not _transient(reset_error, is_transient):
                        raise
            sleep(pause)
        else:
            if attempt > 1:
                log.info(
                    "%s: recovered after %d attempts in %.1fs", what, attempt, clock() - started
                )
            return result


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
#: Errors that are not worth retrying although their class is (57000), and authentication
#: failures (class 28, listed so that the rule reads in one place).
PG_TERMINAL_CODES = frozenset({"57000", "28000", "28P01"})
#: libpq's messages for a connection the server refused for good (authentication, a missing
#: role or database). libpq reports no SQLSTATE for failures while connecting, so psycopg raises
#: a bare ``OperationalError`` that would otherwise read as "connection lost".
PG_CONNECT_TERMINAL_MARKERS = (
    "password authentication failed",
    "authentication failed for user",  # ident, peer, ldap, radius, cert, gss, sspi
    "no pg_hba.conf entry",
    "no password supplied",
    "password is required",
    "does not exist",  # role "x" / database "x" does not exist (28000, 3D000)
    "not permitted to log in",
    "permission denied for database",
)


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
        # No SQLSTATE: the connection broke (server gone, socket closed, network down), unless
        # the server refused the login itself.
        return not postgres_refused_login(exc)
    return isinstance(exc, (ConnectionError, TimeoutError))


def postgres_refused_login(exc: BaseException) -> bool:
    """True when ``exc`` is PostgreSQL refusing a login for good: terminal, never retried.

    A bad password, no such role or database, no ``pg_hba.conf`` entry.
    """
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] == "28":
        return True
    text = str(exc)
    if "FATAL:" not in text and "fe_sendauth" not in text:
        return False
    lowered = text.lower()
    return any(marker in lowered for marker in PG_CONNECT_TERMINAL_MARKERS)


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


#: Server error codes of a refused login: never retried.
CLICKHOUSE_AUTH_CODES = frozenset(
    {
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        516,  # AUTHENTICATION_FAILED
    }
)


def clickhouse_is_transient(exc: BaseException) -> bool:
    """True for clickhouse-driver errors a retry can fix.

    Network errors, timeouts, ``TOO_MANY_PARTS``, memory limits, too many simultaneous queries;
    never a refused login (:data:`CLICKHOUSE_AUTH_CODES`).
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if getattr(exc, "code", None) in CLICKHOUSE_AUTH_CODES:
        return False
    if names & {"NetworkError", "SocketTimeoutError", "UnexpectedPacketFromServerError"}:
        return True
    code = getattr(exc, "code", None)
    if isinstance(code, int) and "ServerException" in names:
        return code in CLICKHOUSE_TRANSIENT_CODES
    return isinstance(exc, (ConnectionError, TimeoutError, EOFError, BrokenPipeError))
