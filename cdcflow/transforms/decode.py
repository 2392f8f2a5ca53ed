"""The decode step: raw batches from a source to event batches plus dead letters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cdcflow.core.components import DECODE_FORMATS, DecodeFormat, DecodeSpec
from cdcflow.core.step import StepResult, raw_dead_letter
from cdcflow.schemas.debezium import DebeziumJsonDecoder, TombstoneHandling
from cdcflow.schemas.model import ChangeEvent, EventBatch, RawBatch
from cdcflow.schemas.registry import FATAL_DECODE_ERRORS

if TYPE_CHECKING:
    from cdcflow.schemas.registry import SchemaRegistryConfig


class DecodeStep:
    """Decode every record of a :class:`RawBatch`.

    Records that fail to decode become dead letters carrying their original key and value bytes
    and the reason; the rest form the output batch, which keeps the input's ``last_offset``.
    ``stream_is_topic`` says whether a position's stream is a Kafka topic name that may name the
    table of messages that do not (true for Kafka, false for files).

    ``debezium-avro`` reads the Confluent wire format and needs ``schema_registry``; a
    registry that cannot be reached (any of
    :data:`~cdcflow.schemas.registry.FATAL_DECODE_ERRORS`) stops the step instead of
    dead-lettering every record.
    """

    name = "decode"

    def __init__(
        self,
        format: DecodeFormat = "debezium-json",
        key_columns: Mapping[str, Sequence[str]] | None = None,
        tombstones: TombstoneHandling = "marker",
        stream_is_topic: bool = True,
        schema_registry: SchemaRegistryConfig | None = None,
    ) -> None:
        if format not in DECODE_FORMATS:
            raise ValueError(f"unsupported format {format!r}: expected one of {DECODE_FORMATS}")
        if format == "debezium-avro" and schema_registry is None:
            raise ValueError("format 'debezium-avro' needs a schema registry configuration")
        self.format = format
        self.key_columns = dict(key_columns or {})
        self.tombstones = tombstones
        self.stream_is_topic = stream_is_topic
        self.schema_registry = schema_registry
        self._decoder: Any = None

    @classmethod
    def from_spec(cls, spec: DecodeSpec) -> DecodeStep:
        """The decode step a source config describes (:meth:`SourceConfig.decoding`)."""
        return cls(
            format=spec.format,
            key_columns=spec.key_columns,
            tombstones=spec.tombstones,
            stream_is_topic=spec.stream_is_topic,
            schema_registry=spec.schema_registry,
        )

    def setup(self) -> None:
        """Create the decoder (and its schema caches; the registry client) on the worker."""
        if self.format == "debezium-avro":
            from cdcflow.schemas.avro import ConfluentAvroDecoder

            assert self.schema_registry is not None
            self._decoder = ConfluentAvroDecoder(
                self.schema_registry.client(),
                key_columns=self.key_columns,
                tombstones=self.tombstones,
            )
            return
        self._decoder = DebeziumJsonDecoder(
            key_columns=self.key_columns, tombstones=self.tombstones
        )

    def teardown(self) -> None:
        """Drop the decoder (closing its registry client, if any)."""
        close = getattr(self._decoder, "close", None)
        if close is not None:
            close()
        self._decoder = None

    def process(self, raw: RawBatch) -> StepResult:
        """Decode one batch; never raises for a bad record."""
        if self._decoder is None:
            self.setup()
        decoder = self._decoder
        assert decoder is not None
        events: list[ChangeEvent] = []
        markers: list = []
        dead = []
        topic = raw.stream if self.stream_is_topic else None
        for record in raw.records:
            try:
                item = decoder.decode(record.value, record.position, key=record.key, topic=topic)
            except FATAL_DECODE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure becomes a dead letter
                dead.append(
                    raw_dead_letter(self.name, exc, record.position, record.value, record.key)
                )
                continue
            if isinstance(item, ChangeEvent):
                events.append(item)
            else:
                markers.append(item)
        batch = EventBatch(
            stream=raw.stream,
            partition=raw.partition,
            last_offset=raw.last_offset,
            events=events,
            markers=markers,
        )
        return StepResult(batch=batch, dead_letters=dead)
