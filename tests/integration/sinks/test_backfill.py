"""Backfilling a sink on the Beam engine, against the real Tansu broker and PostgreSQL.

The rule under test (docs/sinks.md, "Adding a sink and backfilling one sink"): a
position-keeping sink without a position for a partition makes that partition start from the
source's ``start:``, whatever the consumer group committed; the sinks that hold positions
skip what they already have. So a sink added to a pipeline that already ran receives the
whole topic while the old sink is unchanged (no duplicate in its append table), and the
documented procedure for a sink whose ``tables:`` glob had a typo (fix the glob, delete that
sink's positions, run again) fills it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdcflow.io.kafka.settings import KafkaSettings
from cdcflow.io.kafka.source import KafkaSource
from tests.integration.kafka.helpers import (
    envelope,
    group_offsets,
    key,
    messages,
    run_cli,
    write_pipeline,
)
from tests.servers.tansu import create_topic, produce, unique_topic

pytestmark = pytest.mark.integration

HISTORY = {
    "name": "history",
    "type": "postgres",
    "mode": "append",
    "table_map": {"shop.public.orders": "orders_history"},
}


def _sink(base: dict[str, Any], dsn: str, **extra: Any) -> dict[str, Any]:
    return {**base, "dsn": dsn, **extra}


def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def _history(dsn: str) -> list[tuple[str, int]]:
    rows = _rows(dsn, "SELECT _cdc_partition, _cdc_offset FROM orders_history")
    return sorted((str(p), int(o)) for p, o in rows)


def _mirror(dsn: str) -> dict[int, tuple[int, str]]:
    return {r[0]: (r[1], r[2]) for r in _rows(dsn, "SELECT id, amount, note FROM orders")}


def _records_read(stdout: str) -> int:
    for line in stdout.splitlines():
        if line.strip().startswith("records read:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"no 'records read' line in:\n{stdout}")


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def test_a_partition_to_backfill_starts_from_start_not_from_the_group(kafka_broker: str) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=1)
    for i in range(1, 21):  # one batch per record: Tansu's end offset counts batches
        produce(kafka_broker, topic, messages([i]))
    group = f"g-{topic}"
    _commit(kafka_broker, group, topic, {0: 15})

    def starts(start: str, **kwargs: Any) -> int:
        settings = KafkaSettings(
            bootstrap_servers=kafka_broker, group_id=group, topics=(topic,), start=start
        )
        return KafkaSource(settings).start_offsets(**kwargs)[(topic, 0)]

    # Without a partition to backfill the group's committed offset wins (pinned behaviour).
    assert starts("earliest") == 15
    # A sink without a position: start: decides, the group does not count.
    assert starts("earliest", backfill=[(topic, "0")]) == 0
    assert starts("latest", backfill=[(topic, "0")]) == 20
    # start: committed is the group's offset, by definition.
    assert starts("committed", backfill=[(topic, "0")]) == 15
    # A sink that keeps no positions (the group is its position) can only lower the start.
    assert starts("latest", backfill=[(topic, "0")], group_is_a_sink_position=True) == 15
    # A sink position beats the group unless the group is some sink's position.
    assert starts("earliest", resume={(topic, "0"): 18}) == 18
    assert starts("earliest", resume={(topic, "0"): 18}, group_is_a_sink_position=True) == 15


def test_a_sink_added_later_is_backfilled_and_the_old_one_is_unchanged(
    kafka_broker: str, pg_database: str, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, messages(range(1, 201)))
    group = f"g-{topic}"
    first = write_pipeline(
        tmp_path, kafka_broker, [topic], group, sinks=[_sink(HISTORY, pg_database)]
    )
    result = run_cli("run", str(first), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    assert _records_read(result.stdout) == 200
    history = _history(pg_database)
    assert len(history) == 200
    assert set(group_offsets(kafka_broker, group, topic, 2).values()) != {-1001}

    # More changes, then a second sink: an upsert mirror of the same topic.
    updates = [(key(i), envelope(i, "u", amount=i * 100)) for i in range(1, 51)]
    produce(kafka_broker, topic, updates)
    mirror = {"name": "mirror", "type": "postgres", "dsn": pg_database}
    second = write_pipeline(
        tmp_path, kafka_broker, [topic], group, sinks=[_sink(HISTORY, pg_database), mirror]
    )
    result = run_cli("run", str(second), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    # The mirror had no positions: every partition was read from start: (earliest) ...
    assert _records_read(result.stdout) == 250
    expected = {i: (i * 100 if i <= 50 else i * 10, f"n{i}") for i in range(1, 201)}
    assert _mirror(pg_database) == expected
    # ... and the history sink skipped what it had: every position exactly once.
    after = _history(pg_database)
    assert len(after) == 250
    assert len(set(after)) == 250
    assert set(history) <= set(after)

    # A third run has nothing to do for either sink.
    result = run_cli("run", str(second), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    assert _records_read(result.stdout) == 0
    assert len(_history(pg_database)) == 250


def test_the_documented_procedure_backfills_a_sink_whose_glob_had_a_typo(
    kafka_broker: str, pg_database: str, tmp_path: Path
) -> None:
    topic = unique_topic("shop.public.orders")
    create_topic(kafka_broker, topic, partitions=2)
    produce(kafka_broker, topic, messages(range(1, 101)))
    group = f"g-{topic}"
    typo = {"name": "mirror", "type": "postgres", "dsn": pg_database, "tables": "shop.pubic.*"}
    pipeline = write_pipeline(
        tmp_path, kafka_broker, [topic], group, name="typo",
        sinks=[_sink(HISTORY, pg_database), typo],
    )
    result = run_cli("run", str(pipeline), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    assert _mirror(pg_database) == {}  # the glob matched nothing ...
    positions = _rows(
        pg_database, "SELECT partition FROM cdcflow_offsets WHERE pipeline = 'typo' AND "
        "sink = 'mirror'",
    )
    assert len(positions) == 2  # ... yet its positions moved on: a rerun alone fixes nothing

    # The procedure of docs/sinks.md: fix the glob, delete that sink's positions, run again.
    fixed = {**typo, "tables": "shop.public.*"}
    pipeline = write_pipeline(
        tmp_path, kafka_broker, [topic], group, name="typo",
        sinks=[_sink(HISTORY, pg_database), fixed],
    )
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM public.cdcflow_offsets WHERE pipeline = 'typo' AND sink = 'mirror'"
        )
    result = run_cli("run", str(pipeline), "--until-caught-up")
    assert result.returncode == 0, result.stderr
    assert _records_read(result.stdout) == 100
    assert _mirror(pg_database) == {i: (i * 10, f"n{i}") for i in range(1, 101)}
    history = _history(pg_database)
    assert len(history) == 100 and len(set(history)) == 100  # the other sink unchanged
