"""The decode step: raw batches from a source to event batches plus dead letters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from cdcflow.schemas.debezium_json import DebeziumJsonDecoder, TombstoneHandling
from cdcflow.schemas.model import ChangeEvent, EventBatch, RawBatch
from cdcflow.transforms.base import StepResult, raw_dead_letter

Format = Literal["debezium-json"]


class DecodeStep:
    """Decode every record of a :class:`RawBatch`.

    Records that fail to decode become dead letters carrying their original key and value bytes
    and the reason; the rest form the output batch, which keeps the input's ``last_offset``.
    ``stream_is_topic`` says whether a position's stream is a Kafka topic name that may name the
    table of messages that do not (true for Kafka, false for files).
    """

    name = "decode"

    def __init__(
        self,
        format: Format = "debezium-json",
        key_columns: Mapping[str, Sequence[str]] | None = None,
        tombstones: TombstoneHandling = "marker",
        stream_is_topic: bool = True,
    ) -> None:
        if format != "debezium-json":
            raise ValueError(f"unsupported format {format!r}: expected 'debezium-json'")
        self.format = format
        self.key_columns = dict(key_columns or {})
        self.tombstones = tombstones
        self.stream_is_topic = stream_is_topic
        self._decoder: DebeziumJsonDecoder | None = None

    def setup(self) -> None:
        """Create the decoder (and its schema cache) on the worker."""
        self._decoder = DebeziumJsonDecoder(key_columns=self.key_columns, tombstones=self.tombstones)

    def teardown(self) -> None:
        """Drop the decoder."""
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
