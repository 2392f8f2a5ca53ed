"""Dead letters to a Kafka topic (``dead_letter: {type: kafka, ...}``).

Each dead letter becomes one Kafka record:

* key and value: the original message key and value bytes, untouched, when the record failed
  before or during decoding; for a failure after decoding (e.g. a row a sink rejected) the
  value is the canonical JSON of the decoded event (header ``cdcflow.payload: event-json``);
* headers (UTF-8 text): ``cdcflow.reason``, ``cdcflow.error.type``, ``cdcflow.step``,
  ``cdcflow.pipeline``, ``cdcflow.source.topic``, ``cdcflow.source.partition``,
  ``cdcflow.source.offset``, ``cdcflow.failed.at`` (ISO-8601 UTC) and ``cdcflow.payload``
  (``original`` or ``event-json``).

The producer is idempotent (``enable.idempotence``, ``acks=all``) and every ``write`` flushes
and checks each delivery before it returns, so a batch's position is never committed by a sink
before its dead letters are durable in Kafka. A failed delivery raises
:class:`~cdcflow.errors.SinkError` (the run stops; nothing is lost, the batch is replayed).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from cdcflow.core.components import BuildContext, DeadLetterConfig
from cdcflow.core.writer import DeadLetterWriter
from cdcflow.errors import ConfigError, SinkError
from cdcflow.io.kafka import client
from cdcflow.io.kafka.client import client_log
from cdcflow.io.kafka.settings import ConfigValue, checked_client_config, client_settings
from cdcflow.schemas.canonical import dumps
from cdcflow.schemas.model import DeadLetter
from cdcflow.scrub import scrub

_MANAGED = frozenset({"bootstrap.servers", "enable.idempotence"})
_MAX_HEADER = 4096


def _text(value: object) -> bytes:
    text = str(value)
    if len(text) > _MAX_HEADER:
        text = text[: _MAX_HEADER - 3] + "..."
    return text.encode("utf-8", errors="replace")


def letter_headers(letter: DeadLetter, pipeline: str) -> list[tuple[str, bytes]]:
    """The Kafka headers describing ``letter``."""
    failed_at = dt.datetime.fromtimestamp(letter.failed_at_ms / 1000, tz=dt.UTC)
    headers = [
        ("cdcflow.reason", _text(scrub(letter.reason))),
        ("cdcflow.error.type", _text(letter.error_type)),
        ("cdcflow.step", _text(letter.step)),
        ("cdcflow.pipeline", _text(pipeline)),
        ("cdcflow.failed.at", _text(failed_at.isoformat(timespec="milliseconds"))),
        ("cdcflow.payload", b"original" if letter.event is None else b"event-json"),
    ]
    if letter.position is not None:
        headers.extend(
            [
                ("cdcflow.source.topic", _text(letter.position.stream)),
                ("cdcflow.source.partition", _text(letter.position.partition)),
                ("cdcflow.source.offset", _text(letter.position.offset)),
            ]
        )
    return headers


class KafkaDeadLetterWriter(DeadLetterWriter):
    """Produce dead letters to a Kafka topic (see the module docstring)."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        pipeline: str,
        producer_config: dict[str, ConfigValue | SecretStr] | None = None,
        flush_timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.pipeline = pipeline
        self.producer_config = dict(producer_config or {})
        self.flush_timeout_s = flush_timeout_s
        self._producer: Any = None
        self._lock = threading.Lock()
        self.written = 0

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_producer"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the idempotent producer."""
        if self._producer is not None:
            return
        kafka = client.confluent()
        config: dict[str, Any] = {"acks": "all", "linger.ms": 5, "compression.type": "none"}
        config.update(client_settings(self.producer_config))
        config.update({"bootstrap.servers": self.bootstrap_servers, "enable.idempotence": True})
        try:
            self._producer = kafka.Producer(config, logger=client_log)
        except kafka.KafkaException as exc:
            raise ConfigError(f"dead_letter: invalid Kafka producer settings: {exc}") from None

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Produce ``letters`` and wait until Kafka acknowledged every one."""
        if not letters:
            return
        self.open()
        failures: list[str] = []

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        with self._lock:
            producer = self._producer
            for letter in letters:
                value = letter.value if letter.event is None else dumps(letter.event)
                kwargs = {
                    "key": letter.key,
                    "value": value,
                    "headers": letter_headers(letter, self.pipeline),
                    "on_delivery": on_delivery,
                }
                while True:
                    try:
                        producer.produce(self.topic, **kwargs)
                        break
                    except BufferError:
                        producer.poll(0.05)
                    except client.confluent().KafkaException as exc:
                        raise SinkError(
                            f"cannot produce dead letters to Kafka topic {self.topic!r}: {exc}"
                        ) from None
            remaining = producer.flush(self.flush_timeout_s)
        if remaining:
            raise SinkError(
                f"{remaining} dead letter(s) not acknowledged by Kafka topic {self.topic!r} "
                f"within {self.flush_timeout_s}s"
            )
        if failures:
            raise SinkError(
                f"{len(failures)} dead letter(s) could not be written to Kafka topic "
                f"{self.topic!r}: {failures[0]}"
            )
        self.written += len(letters)

    def close(self) -> None:
        """Flush and drop the producer."""
        if self._producer is not None:
            self._producer.flush(self.flush_timeout_s)
            self._producer = None

    def check(self, timeout_s: float = 10.0) -> list[str]:
        """The brokers answer a metadata request within ``timeout_s`` (nothing is produced)."""
        try:
            kafka = client.confluent()
        except ImportError as exc:
            return [f"dead_letter: {exc}"]
        config: dict[str, Any] = dict(client_settings(self.producer_config))
        config.update({"bootstrap.servers": self.bootstrap_servers, "enable.idempotence": True})
        try:
            producer = kafka.Producer(config, logger=client_log)
        except kafka.KafkaException as exc:
            return [f"dead_letter: invalid Kafka producer settings: {exc}"]
        try:
            producer.list_topics(timeout=timeout_s)
        except kafka.KafkaException as exc:
            return [f"dead_letter: cannot reach Kafka at {self.bootstrap_servers}: {exc}"]
        finally:
            producer.flush(0)
        return []

    def describe(self) -> list[str]:
        """Where the dead letters go."""
        return [f"dead letters: Kafka topic {self.topic} on {self.bootstrap_servers}"]


class DeadLetterKafkaConfig(DeadLetterConfig):
    """``dead_letter: {type: kafka, bootstrap_servers, topic, producer_config}``."""

    type: Literal["kafka"]
    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    producer_config: dict[str, ConfigValue | SecretStr] = Field(default={}, repr=False)
    flush_timeout_s: float = Field(default=30.0, gt=0, le=600)

    @field_validator("producer_config", mode="before")
    @classmethod
    def _wrap_secrets(cls, value: Any) -> Any:
        return checked_client_config(
            value, _MANAGED, "use bootstrap_servers; the producer is always idempotent"
        )

    def build(self, context: BuildContext) -> KafkaDeadLetterWriter:
        """Build the writer (the producer is created on the worker)."""
        return KafkaDeadLetterWriter(
            self.bootstrap_servers,
            self.topic,
            context.pipeline,
            producer_config=dict(self.producer_config),
            flush_timeout_s=self.flush_timeout_s,
        )
