"""Debezium-style Avro schemas and a Confluent wire-format writer, shared by the Avro tests."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro

from cdcflow.schemas.avro import _strip_logical_types


def connect(type_: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "connect.version": 1, "connect.name": name, **extra}


DECIMAL = connect(
    "bytes",
    "org.apache.kafka.connect.data.Decimal",
    scale=2,
    precision=10,
    logicalType="decimal",
    **{"connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}},
)
VARIABLE_SCALE = {
    "type": "record",
    "name": "VariableScaleDecimal",
    "namespace": "io.debezium.data",
    "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
    "connect.version": 1,
    "connect.name": "io.debezium.data.VariableScaleDecimal",
}


def value_schema(table: str = "orders") -> dict[str, Any]:
    """A PostgreSQL connector row schema with the logical types that matter."""
    return {
        "type": "record",
        "name": "Value",
        "namespace": f"shop.public.{table}",
        "fields": [
            {"name": "id", "type": "int"},
            {"name": "amount", "type": ["null", DECIMAL], "default": None},
            {
                "name": "created",
                "type": ["null", connect("long", "io.debezium.time.MicroTimestamp")],
                "default": None,
            },
            {
                "name": "day",
                "type": ["null", connect("int", "io.debezium.time.Date")],
                "default": None,
            },
            {
                "name": "zoned",
                "type": ["null", connect("string", "io.debezium.time.ZonedTimestamp")],
                "default": None,
            },
            {"name": "ratio", "type": ["null", VARIABLE_SCALE], "default": None},
            {
                "name": "stamped",
                "type": [
                    "null",
                    connect(
                        "long",
                        "org.apache.kafka.connect.data.Timestamp",
                        logicalType="timestamp-millis",
                    ),
                ],
                "default": None,
            },
            {
                "name": "at",
                "type": ["null", connect("long", "io.debezium.time.MicroTime")],
                "default": None,
            },
            {"name": "small", "type": {"type": "int", "connect.type": "int16"}},
            {"name": "note", "type": ["null", "string"], "default": None},
            {"name": "blob", "type": ["null", "bytes"], "default": None},
            {
                "name": "doc",
                "type": ["null", connect("string", "io.debezium.data.Json")],
                "default": None,
            },
        ],
        "connect.name": f"shop.public.{table}.Value",
    }


def envelope_schema(table: str = "orders") -> dict[str, Any]:
    """The Debezium envelope around :func:`value_schema` (before/after share the named type)."""
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": f"shop.public.{table}",
        "fields": [
            {"name": "before", "type": ["null", value_schema(table)], "default": None},
            {"name": "after", "type": ["null", "Value"], "default": None},
            {
                "name": "source",
                "type": {
                    "type": "record",
                    "name": "Source",
                    "namespace": "io.debezium.connector.postgresql",
                    "fields": [
                        {"name": "version", "type": "string"},
                        {"name": "connector", "type": "string"},
                        {"name": "name", "type": "string"},
                        {"name": "ts_ms", "type": "long"},
                        {
                            "name": "snapshot",
                            "type": [connect("string", "io.debezium.data.Enum"), "null"],
                            "default": "false",
                        },
                        {"name": "db", "type": "string"},
                        {"name": "schema", "type": "string"},
                        {"name": "table", "type": "string"},
                        {"name": "lsn", "type": ["null", "long"], "default": None},
                    ],
                },
            },
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": None},
        ],
        "connect.name": f"shop.public.{table}.Envelope",
    }


KEY_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Key",
    "namespace": "shop.public.orders",
    "fields": [{"name": "id", "type": "int"}],
    "connect.name": "shop.public.orders.Key",
}


def row(row_id: int) -> dict[str, Any]:
    """A row in Avro wire values (what the Debezium Avro converter writes)."""
    return {
        "id": row_id,
        "amount": (12345 + row_id).to_bytes(4, "big", signed=True),  # 123.45 + id/100
        "created": 1_700_000_000_123_456,  # µs
        "day": 19_723,  # 2024-01-01
        "zoned": "2024-01-15T10:30:00.123456789+02:00",
        "ratio": {"scale": 3, "value": (-1500).to_bytes(2, "big", signed=True)},
        "stamped": 1_700_000_000_123,  # ms
        "at": 37_800_000_000,  # 10:30:00
        "small": 7,
        "note": f"note {row_id}",
        "blob": b"\x00\xff",
        "doc": '{"a": 1}',
    }


def envelope(row_id: int, op: str = "c") -> dict[str, Any]:
    image = row(row_id)
    return {
        "before": image if op == "d" else None,
        "after": None if op == "d" else image,
        "source": {
            "version": "2.5.0.Final",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": 1_700_000_000_000,
            "snapshot": "false",
            "db": "shop",
            "schema": "public",
            "table": "orders",
            "lsn": 1000 + row_id,
        },
        "op": op,
        "ts_ms": 1_700_000_000_500,
    }


def wire(schema_id: int, schema: Any, datum: Any) -> bytes:
    """Encode ``datum`` in the Confluent wire format (magic 0, 4-byte id, Avro binary)."""
    parsed = fastavro.parse_schema(_strip_logical_types(json.loads(json.dumps(schema))))
    out = io.BytesIO()
    out.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(out, parsed, datum)
    return out.getvalue()


class DictRegistry:
    """An in-memory schema source: ``{id: schema text}``."""

    def __init__(self, schemas: dict[int, Any]) -> None:
        self.schemas = {k: v if isinstance(v, str) else json.dumps(v) for k, v in schemas.items()}
        self.fetches: list[int] = []

    def get_schema(self, schema_id: int) -> str:
        from cdcflow.schemas.registry import UnknownSchemaError

        self.fetches.append(schema_id)
        if schema_id not in self.schemas:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry")
        return self.schemas[schema_id]
