"""Debezium Avro through a Confluent-compatible schema registry (the test registry server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.integration.kafka.helpers import run_cli, write_pipeline
from tests.servers.schema_registry import RegistryInfo
from tests.servers.tansu import consume_all, create_topic, produce, unique_topic
from tests.unit.avro_samples import KEY_SCHEMA, envelope, envelope_schema, wire

pytestmark = pytest.mark.integration


def test_avro_records_through_the_registry(
    kafka_broker: str,
    schema_registry: RegistryInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = unique_topic("shop.public.orders")
    dlq = unique_topic("shop.dlq")
    create_topic(kafka_broker, topic, partitions=2)
    create_topic(kafka_broker, dlq, partitions=1)
    value_id = schema_registry.register(f"{topic}-value", envelope_schema())
    key_id = schema_registry.register(f"{topic}-key", KEY_SCHEMA)
    good = [
        (wire(key_id, KEY_SCHEMA, {"id": i}), wire(value_id, envelope_schema(), envelope(i)))
        for i in range(1, 21)
    ]
    deleted = [
        (wire(key_id, KEY_SCHEMA, {"id": 20}), wire(value_id, envelope_schema(), envelope(20, "d")))
    ]
    full = wire(value_id, envelope_schema(), envelope(30))
    bad = [
        (None, b"\x00\x00\x00\x03\xe7" + full[5:]),  # schema id 999: unknown
        (None, b"\x01" + full[1:]),  # wrong magic byte
        (None, full[:25]),  # truncated payload
    ]
    produce(kafka_broker, topic, good, partition=0)
    produce(kafka_broker, topic, bad, partition=1)
    produce(kafka_broker, topic, deleted, partition=0)

    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", "wrong")
    pipeline = write_pipeline(
        tmp_path,
        kafka_broker,
        [topic],
        f"g-{topic}",
        extra_source={
            "format": "debezium-avro",
            "schema_registry": {
                "url": schema_registry.url,
                "username": schema_registry.username,
                "password": "${TEST_REGISTRY_PASSWORD}",
            },
        },
        dead_letter={"type": "kafka", "bootstrap_servers": kafka_broker, "topic": dlq},
    )
    invalid = run_cli("validate", str(pipeline))
    assert invalid.returncode == 1
    assert "rejected the credentials" in invalid.stderr
    refused = run_cli("run", str(pipeline), "--until-caught-up")
    assert refused.returncode == 1
    assert "rejected the credentials" in refused.stderr
    assert "wrong" not in refused.stderr.replace("wrong magic", "")

    monkeypatch.setenv("TEST_REGISTRY_PASSWORD", schema_registry.password)
    valid = run_cli("validate", str(pipeline))
    assert valid.returncode == 0, valid.stderr
    result = run_cli("run", str(pipeline), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    assert schema_registry.password not in result.stdout + result.stderr
    with sqlite3.connect(tmp_path / "out" / "mirror.sqlite") as conn:
        rows = conn.execute(
            "SELECT id, amount, created, day, zoned, ratio, stamped, at, note"
            " FROM orders ORDER BY id"
        ).fetchall()
    assert [r[0] for r in rows] == list(range(1, 20))
    assert rows[0] == (
        1,
        "123.46",
        "2023-11-14T22:13:20.123456",
        "2024-01-01",
        "2024-01-15T08:30:00.123456Z",
        "-1.500",
        "2023-11-14T22:13:20.123000",
        "10:30:00",
        "note 1",
    )

    letters = consume_all(kafka_broker, dlq, expected=3)
    assert [m.value() for m in letters] == [value for _, value in bad]
    reasons = [dict(m.headers())["cdcflow.reason"].decode() for m in letters]
    assert "schema id 999 is not in the schema registry" in reasons[0]
    assert "wrong magic byte 1" in reasons[1]
    assert "truncated" in reasons[2]
