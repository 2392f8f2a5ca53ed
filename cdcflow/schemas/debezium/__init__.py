"""Debezium messages, JSON and the envelope rules shared with Avro.

Modules, each with one job (the Avro codec is :mod:`cdcflow.schemas.avro`):

* :mod:`~cdcflow.schemas.debezium.json_codec`: JSON bytes to payloads, with the schema cache
  (:class:`DebeziumJsonDecoder`, the JSON decoder pipelines use);
* :mod:`~cdcflow.schemas.debezium.schema_block`: a Connect ``schema`` block compiled into a
  :class:`~cdcflow.schemas.debezium.compiled.CompiledSchema` (message kind, row checker, table
  schema);
* :mod:`~cdcflow.schemas.debezium.envelope`: the one interpreter of parsed payloads
  (:class:`EnvelopeInterpreter`), used by the JSON and the Avro codec, with its parts:
  :mod:`~cdcflow.schemas.debezium.kinds` (which kind a message is),
  :mod:`~cdcflow.schemas.debezium.markers` (transaction, schema-change and heartbeat messages),
  :mod:`~cdcflow.schemas.debezium.source` (the source block and integer fields),
  :mod:`~cdcflow.schemas.debezium.tables` (table names, configured key columns),
  :mod:`~cdcflow.schemas.debezium.toast` (the unavailable-value placeholder) and
  :mod:`~cdcflow.schemas.debezium.mongo` (MongoDB's envelopes).
"""

from cdcflow.schemas.debezium.envelope import EnvelopeInterpreter, TombstoneHandling
from cdcflow.schemas.debezium.json_codec import DebeziumJsonDecoder

__all__ = ["DebeziumJsonDecoder", "EnvelopeInterpreter", "TombstoneHandling"]
