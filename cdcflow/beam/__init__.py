"""The Apache Beam engine: thin PTransforms around the engine-neutral core.

Every element on the hot path is a batch (:class:`~cdcflow.schemas.model.RawBatch` from a
source, :class:`~cdcflow.schemas.model.EventBatch` after decoding). Compose them in any Beam
pipeline::

    raw = p | "Read" >> ReadFromSource(FileSource([...]))
    decoded = raw | "Decode" >> Decode(stream_is_topic=False)
    redacted = decoded.events | "Redact" >> Redact([{"columns": ["email"], "strategy": "drop"}])
    redacted.events | "Write" >> WriteTo(SqliteWriter(...))
    decoded.dead_letters | "DLQ" >> WriteDeadLetters(DeadLetterFileWriter(...))

``ReadFromKafka(source, writers=[...], until_caught_up=True)`` reads a Kafka source, each
partition resuming where the given writers' stored positions say (the same rule as
``cdcflow run``).

``ApplyStep`` has two outputs, ``events`` and ``dead_letters``. With ``carry=True`` dead
letters instead travel inside each batch until :class:`StoreDeadLetters` or :class:`WriteTo`
has stored them, so that no sink can commit a batch's position before its dead letters are
stored.

``cdcflow run`` builds ``Read -> Execute``: :class:`Execute` runs the engine-neutral
:class:`~cdcflow.core.executor.BatchExecutor`, the write path the Flink engine runs too.
"""

from cdcflow.beam.kafka import ReadFromKafka
from cdcflow.beam.transforms import (
    DEAD_LETTERS,
    EVENTS,
    ApplyStep,
    Decode,
    Execute,
    ReadFromSource,
    Redact,
    StoreDeadLetters,
    WriteDeadLetters,
    WriteTo,
)

__all__ = [
    "DEAD_LETTERS",
    "EVENTS",
    "ApplyStep",
    "Decode",
    "Execute",
    "ReadFromKafka",
    "ReadFromSource",
    "Redact",
    "StoreDeadLetters",
    "WriteDeadLetters",
    "WriteTo",
]
