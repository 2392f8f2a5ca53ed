"""Kafka failures: refused access is terminal, a lost broker is transient (no servers)."""

from __future__ import annotations

from typing import Any

import confluent_kafka as ck
import pytest

from cdcflow.errors import TerminalError, TransientError
from cdcflow.io.kafka.client import KafkaAuthError, KafkaError, refused_access
from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.io.kafka.source import KafkaSource


def _exception(code: int, text: str = "x") -> ck.KafkaException:
    return ck.KafkaException(ck.KafkaError(code, text))


@pytest.mark.parametrize(
    ("code", "refused"),
    [
        (ck.KafkaError._AUTHENTICATION, True),
        (ck.KafkaError.SASL_AUTHENTICATION_FAILED, True),
        (ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, True),
        (ck.KafkaError.GROUP_AUTHORIZATION_FAILED, True),
        (ck.KafkaError._TRANSPORT, False),
        (ck.KafkaError._TIMED_OUT, False),
        (ck.KafkaError._ALL_BROKERS_DOWN, False),
    ],
)
def test_refused_access_is_told_apart_from_a_lost_broker(code: int, refused: bool) -> None:
    assert refused_access(_exception(code)) is refused


class _Consumer:
    """Answers ``list_topics`` with the given failures, then raises the last one for ever."""

    def __init__(self, failures: list[ck.KafkaException]) -> None:
        self.failures = failures
        self.calls = 0

    def list_topics(self, timeout: float) -> Any:
        self.calls += 1
        raise self.failures[min(self.calls, len(self.failures)) - 1]

    def poll(self, timeout: float) -> None:
        return None


def _source(timeout_s: float) -> KafkaSource:
    return KafkaSource(
        KafkaSettings(
            bootstrap_servers="broker:9092",
            group_id="g",
            topics=("t",),
            metadata_timeout_s=timeout_s,
        )
    )


def test_a_refused_login_ends_the_wait_at_once_and_is_terminal() -> None:
    consumer = _Consumer([_exception(ck.KafkaError._AUTHENTICATION, "SASL authentication error")])
    with pytest.raises(KafkaAuthError, match="broker:9092 refused access") as info:
        _source(60)._list_topics(consumer)
    assert consumer.calls == 1
    assert isinstance(info.value, TerminalError) and not isinstance(info.value, TransientError)


def test_an_unreachable_broker_is_asked_until_the_timeout_then_named() -> None:
    consumer = _Consumer([_exception(ck.KafkaError._TRANSPORT, "Broker transport failure")])
    with pytest.raises(KafkaError, match=r"no Kafka broker at broker:9092 answered within 0\.2s"):
        _source(0.2)._list_topics(consumer)
    assert consumer.calls >= 2  # asked in slices, not one long wait
