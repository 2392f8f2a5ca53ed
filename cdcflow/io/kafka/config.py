"""``source: {type: kafka}``: the YAML model of a Kafka source (docs/kafka.md lists every key).

Contract: validation refuses what cannot work before anything connects (a start that is not a
mode or a zoned ISO-8601 timestamp, a bad ``topic_pattern``, managed librdkafka keys in
``consumer_config``, Avro without a schema registry, both or neither of ``topics`` and
``topic_pattern``); ``consumer_config`` secrets are wrapped so they never print.
:meth:`KafkaSourceConfig.build` connects to nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from cdcflow.core.components import BuildContext, DecodeSpec, SourceConfig
from cdcflow.io.kafka.settings import (
    MANAGED_KEYS,
    ConfigValue,
    KafkaSettings,
    checked_client_config,
)
from cdcflow.io.kafka.source import KafkaSource
from cdcflow.schemas.registry import SchemaRegistryConfig


def parse_start(value: str) -> str | int:
    """``earliest``/``latest``/``committed``, or an ISO-8601 timestamp as epoch milliseconds.

    A timestamp must carry a zone (``Z`` or an offset): a naive time is ambiguous.
    """
    if value in ("earliest", "latest", "committed"):
        return value
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be earliest, latest, committed or an ISO-8601 timestamp with a zone "
            f"such as 2026-01-01T00:00:00Z (got {value!r})"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"the timestamp {value!r} has no zone: add Z or an offset such as +02:00"
        )
    return int(moment.timestamp() * 1000)


class KafkaSourceConfig(SourceConfig):
    """``type: kafka`` — Debezium change topics (see docs/kafka.md for every option)."""

    type: Literal["kafka"]
    bootstrap_servers: str = Field(min_length=1)
    topics: list[str] = []
    topic_pattern: str | None = Field(default=None, min_length=1)
    group_id: str | None = Field(default=None, min_length=1)
    start: str = "earliest"
    format: Literal["debezium-json", "debezium-avro"] = "debezium-json"
    schema_registry: SchemaRegistryConfig | None = None
    consumer_config: dict[str, ConfigValue | SecretStr] = Field(default={}, repr=False)
    max_batch_size: int = Field(default=10_000, ge=1, le=1_000_000)
    poll_timeout_ms: int = Field(default=500, ge=10, le=60_000)
    commit_offsets: bool = True
    metadata_timeout_ms: int = Field(default=15_000, ge=100, le=600_000)
    streaming_retry_s: float = Field(default=300.0, ge=0, le=7 * 86400)
    key_columns: dict[str, list[str]] = {}
    tombstones: Literal["marker", "delete"] = "marker"

    @field_validator("start")
    @classmethod
    def _check_start(cls, value: str) -> str:
        parse_start(value)
        return value

    @field_validator("topic_pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("consumer_config", mode="before")
    @classmethod
    def _wrap_secrets(cls, value: Any) -> Any:
        return checked_client_config(
            value,
            MANAGED_KEYS,
            "use bootstrap_servers / group_id, offsets are committed after the sinks write",
        )

    @model_validator(mode="after")
    def _check_shape(self) -> KafkaSourceConfig:
        if bool(self.topics) == (self.topic_pattern is not None):
            raise ValueError("give exactly one of 'topics' (a list) or 'topic_pattern' (a regex)")
        if self.format == "debezium-avro" and self.schema_registry is None:
            raise ValueError("format debezium-avro needs a 'schema_registry' section (url, ...)")
        return self

    def settings(self, context: BuildContext) -> KafkaSettings:
        """The worker settings for this source."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id or f"cdcflow.{context.pipeline}",
            topics=tuple(self.topics),
            topic_pattern=self.topic_pattern,
            start=parse_start(self.start),
            client_config=dict(self.consumer_config),
            max_batch_size=self.max_batch_size,
            poll_timeout_s=self.poll_timeout_ms / 1000,
            commit_offsets=self.commit_offsets,
            metadata_timeout_s=self.metadata_timeout_ms / 1000,
            streaming_retry_s=self.streaming_retry_s,
        )

    def build(self, context: BuildContext) -> KafkaSource:
        """Build the source (nothing connects until partitions are listed)."""
        return KafkaSource(self.settings(context), schema_registry=self.schema_registry)

    def decoding(self) -> DecodeSpec:
        """How this source's records are decoded (a position's stream is the topic)."""
        return DecodeSpec(
            format=self.format,
            key_columns=self.key_columns,
            tombstones=self.tombstones,
            stream_is_topic=True,
            schema_registry=self.schema_registry,
        )

