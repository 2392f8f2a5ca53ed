"""Summarising repeated librdkafka log lines (cdcflow.io.kafka.logs)."""

from __future__ import annotations

import logging

import pytest

from cdcflow.io.kafka.logs import CLIENT_LOGGER, RepeatSummary


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _record(
    message: str, level: int = logging.ERROR, name: str = CLIENT_LOGGER
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


def _refused(port: int, ms: int) -> logging.LogRecord:
    return _record(
        f"FAIL [rdkafka#consumer-{port % 3}] [thrd:127.0.0.1:{port}/bootstrap]: Connect to "
        f"ipv4#127.0.0.1:{port} failed: Connection refused (after {ms}ms in state CONNECT)"
    )


def test_repeats_are_dropped_then_counted_once_a_minute() -> None:
    clock = _Clock()
    summary = RepeatSummary(every_s=60, clock=clock)
    shown = []
    for i in range(290):
        clock.now = i * 0.5  # 145 s of retries, two a second
        record = _refused(9092, i % 7)
        if summary.filter(record):
            shown.append(record.getMessage())
    assert len(shown) == 3  # at 0 s, 60 s and 120 s
    assert "(" not in shown[0].split("CONNECT")[1]
    assert shown[1].endswith("(119 more like this in the last 60s)")
    assert shown[2].endswith("(119 more like this in the last 60s)")


def test_different_messages_and_info_lines_pass() -> None:
    summary = RepeatSummary(clock=_Clock())
    assert summary.filter(_record("Connect to 127.0.0.1:1 failed: Connection refused"))
    assert summary.filter(_record("SASL authentication error: wrong password"))
    info = _record("Connect to 127.0.0.1:1 failed: Connection refused", level=logging.INFO)
    assert summary.filter(info) and summary.filter(info)


@pytest.mark.parametrize("name", ["cdcflow.io.kafka.poller", CLIENT_LOGGER])
def test_the_last_client_error_is_kept_for_the_final_message(name: str) -> None:
    summary = RepeatSummary(clock=_Clock())
    summary.filter(_record("Connect failed: Connection refused", name=name))
    assert summary.last_error == (
        "Connect failed: Connection refused" if name == CLIENT_LOGGER else None
    )
