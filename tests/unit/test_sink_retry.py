"""Retry policy and the transient/terminal classification of PostgreSQL and ClickHouse errors."""

from __future__ import annotations

import random

import psycopg
import pytest
from clickhouse_driver import errors as ch_errors
from psycopg import errors as pg_errors

from cdcflow.errors import TransientError, TransientSinkError
from cdcflow.io.retry import (
    RetryPolicy,
    call_with_retry,
    clickhouse_is_transient,
    postgres_is_transient,
)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=1, multiplier=2, max_backoff_s=5, jitter=0)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_jitter_stays_within_the_band() -> None:
    policy = RetryPolicy(initial_backoff_s=1, multiplier=2, max_backoff_s=100, jitter=0.5)
    rng = random.Random(1)
    pauses = [policy.backoff(3, rng) for _ in range(200)]
    assert all(2.0 <= p <= 4.0 for p in pauses)
    assert len({round(p, 6) for p in pauses}) > 100  # randomised, not constant


def test_retries_transient_failures_then_succeeds() -> None:
    calls: list[int] = []
    resets: list[str] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("boom")
        return "ok"

    result = call_with_retry(
        flaky,
        lambda e: isinstance(e, ConnectionError),
        RetryPolicy(max_attempts=5, initial_backoff_s=0.5, jitter=0),
        "write",
        on_retry=lambda e: resets.append(type(e).__name__),
        sleep=sleeps.append,
    )
    assert result == "ok"
    assert len(calls) == 3
    assert resets == ["ConnectionResetError", "ConnectionResetError"]
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_the_limit_with_a_transient_sink_error() -> None:
    def always() -> None:
        raise TimeoutError("still down")

    with pytest.raises(
        TransientSinkError, match=r"sink 'x': giving up after 4 attempts.*still down"
    ) as info:
        call_with_retry(
            always, lambda e: True, RetryPolicy(max_attempts=4), "sink 'x'", sleep=lambda s: None
        )
    assert isinstance(info.value.__cause__, TimeoutError)


def test_terminal_errors_propagate_at_once() -> None:
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        call_with_retry(bad, lambda e: False, RetryPolicy(), "w", sleep=lambda s: None)
    assert calls == [1]


_REFUSED = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '


class _Clock:
    """A fake monotonic clock that the fake sleep advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_streaming_retries_for_the_span_not_a_number_of_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    policy = RetryPolicy(
        max_attempts=3, initial_backoff_s=0.5, max_backoff_s=8, jitter=0, streaming_span_s=60
    )
    calls: list[float] = []

    def down_for_45_seconds() -> str:
        calls.append(clock.now)
        if clock.now < 1045:
            raise ConnectionRefusedError("connection refused")
        return "written"

    with caplog.at_level("DEBUG", logger="cdcflow.io.retry"):
        result = call_with_retry(
            down_for_45_seconds,
            lambda e: True,
            policy,
            "sink 'wh': write",
            sleep=clock.sleep,
            streaming=True,
            clock=clock,
        )
    assert result == "written"
    assert len(calls) > policy.max_attempts
    # Capped exponential backoff: 0.5, 1, 2, 4, 8, 8, ...
    assert clock.sleeps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert max(clock.sleeps) == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings[0].startswith("sink 'wh': write: transient failure, retrying for up to 60s")
    # One start warning and one progress warning per 30 s of outage, not one per attempt.
    assert len(warnings) == 2, warnings
    assert "still failing after" in warnings[1]
    infos = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert infos == [
        f"sink 'wh': write: recovered after {len(calls)} attempts in {sum(clock.sleeps):.1f}s"
    ]


def test_streaming_gives_up_after_the_span_naming_the_work() -> None:
    clock = _Clock()
    policy = RetryPolicy(initial_backoff_s=1, max_backoff_s=10, jitter=0, streaming_span_s=100)

    def always() -> None:
        raise TimeoutError("still down")

    with pytest.raises(TransientSinkError) as info:
        call_with_retry(
            always,
            lambda e: True,
            policy,
            "sink 'wh': write of t/0",
            sleep=clock.sleep,
            streaming=True,
            clock=clock,
        )
    message = str(info.value)
    assert message.startswith("sink 'wh': write of t/0: giving up after ")
    assert "in 100.0s (retry.streaming_span_s is 100s)" in message
    assert message.endswith("last error: TimeoutError: still down")
    assert clock.now == 1100  # the last pause is cut to the span's end


def test_a_run_that_ends_keeps_the_attempt_limit() -> None:
    clock = _Clock()
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise TimeoutError("down")

    with pytest.raises(TransientSinkError, match="giving up after 6 attempts"):
        call_with_retry(always, lambda e: True, RetryPolicy(), "w", sleep=clock.sleep, clock=clock)
    assert len(calls) == 6


def test_cdcflow_transient_errors_are_always_retried() -> None:
    attempts: list[int] = []

    def op() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise TransientError("throttled")
        return 1

    assert call_with_retry(op, lambda e: False, RetryPolicy(), "w", sleep=lambda s: None) == 1


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (pg_errors.SerializationFailure("x"), True),
        (pg_errors.DeadlockDetected("x"), True),
        (pg_errors.AdminShutdown("terminating connection"), True),
        (pg_errors.CannotConnectNow("starting up"), True),
        (pg_errors.TooManyConnections("x"), True),
        (pg_errors.LockNotAvailable("x"), True),
        (pg_errors.QueryCanceled("statement timeout"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (pg_errors.NumericValueOutOfRange("x"), False),
        (pg_errors.InvalidTextRepresentation("x"), False),
        (pg_errors.NotNullViolation("x"), False),
        (pg_errors.UndefinedTable("x"), False),
        (pg_errors.InsufficientPrivilege("x"), False),
        (ValueError("x"), False),
        # Refused logins are terminal (issue 10 item 9): SQLSTATE class 28 when the server sends
        # one, libpq's FATAL message when connecting (psycopg then has no SQLSTATE).
        (pg_errors.InvalidPassword("password authentication failed"), False),
        (pg_errors.InvalidAuthorizationSpecification("role does not exist"), False),
        (
            psycopg.OperationalError(
                f'{_REFUSED}FATAL:  password authentication failed for user "app"'
            ),
            False,
        ),
        (psycopg.OperationalError(f'{_REFUSED}FATAL:  role "nobody" does not exist'), False),
        (psycopg.OperationalError(f'{_REFUSED}FATAL:  database "shop" does not exist'), False),
        (psycopg.OperationalError(f"{_REFUSED}FATAL:  no pg_hba.conf entry for host"), False),
        (psycopg.OperationalError(f"{_REFUSED}fe_sendauth: no password supplied"), False),
        (psycopg.OperationalError(f"{_REFUSED}Connection refused"), True),
        (psycopg.OperationalError(f"{_REFUSED}FATAL:  the database system is starting up"), True),
    ],
)
def test_postgres_classification(error: BaseException, transient: bool) -> None:
    assert postgres_is_transient(error) is transient


def _server_error(code: int) -> ch_errors.ServerException:
    return ch_errors.ServerException("DB::Exception: x", code=code)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_server_error(252), True),  # TOO_MANY_PARTS
        (_server_error(202), True),  # TOO_MANY_SIMULTANEOUS_QUERIES
        (_server_error(241), True),  # MEMORY_LIMIT_EXCEEDED
        (_server_error(159), True),  # TIMEOUT_EXCEEDED
        (ch_errors.NetworkError("connection refused"), True),
        (ch_errors.SocketTimeoutError("timed out"), True),
        (EOFError("Unexpected EOF while reading bytes"), True),
        (ConnectionResetError(), True),
        (_server_error(60), False),  # UNKNOWN_TABLE
        (_server_error(53), False),  # TYPE_MISMATCH
        (_server_error(62), False),  # SYNTAX_ERROR
        (_server_error(516), False),  # AUTHENTICATION_FAILED
        (_server_error(193), False),  # WRONG_PASSWORD
        (_server_error(192), False),  # UNKNOWN_USER
        (ValueError("x"), False),
    ],
)
def test_clickhouse_classification(error: BaseException, transient: bool) -> None:
    assert clickhouse_is_transient(error) is transient
