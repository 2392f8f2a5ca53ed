"""The hand-written loop of the hot-path benchmark (run as a script by ``hot_path.py``).

Kafka (confluent-kafka, assigned partitions from offset 0) -> msgspec typed structs -> the
e-mail hashed with cdcflow's ``hash-sha256`` (hex SHA-256 of ``salt || 0x00 || utf8(text)``) ->
PostgreSQL. One consumer reads every partition of every topic (``--topics``; topic i goes to
table i of ``--tables``). Per polled batch the net change per table and key is kept; one
transaction then, per table, deletes the deleted keys (``DELETE ... WHERE id = ANY``),
binary-``COPY``s the upserted rows into the table's temporary staging table and
``INSERT ... SELECT ... ON CONFLICT DO UPDATE``s them, and upserts the offsets per
``(topic, partition)``. A writer thread runs batch k's transaction while the main thread
decodes batch k+1.

With ``--schema-block`` the values carry the ``schema``/``payload`` wrapper: each distinct schema
block (by its bytes) is parsed once into a plan naming the Connect Decimal's scale and the
MicroTimestamp column, and every row's ``amount`` becomes a ``Decimal`` and ``created_at`` a
``datetime``. Without it the values stay as sent (base64 text, integer), like cdcflow's.

It stops when every partition's last offset (``--ends``) is committed; it prints the number
of transactions it committed (``transactions N``).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import queue
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from confluent_kafka import Consumer, TopicPartition

EPOCH = dt.datetime(1970, 1, 1)


class Row(msgspec.Struct):
    id: int
    customer: str | None = None
    email: str | None = None
    qty: int | None = None
    amount: str | None = None
    created_at: int | None = None


class Envelope(msgspec.Struct):
    op: str
    before: Row | None = None
    after: Row | None = None


class Wrapped(msgspec.Struct):
    schema: msgspec.Raw
    payload: Envelope


Convert = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _plan(schema: bytes) -> tuple[Convert, Convert]:
    """Converters for ``amount`` and ``created_at`` from an envelope's schema block."""
    document = msgspec.json.decode(schema)
    fields = next(f for f in document["fields"] if f.get("field") == "after")["fields"]
    converters: dict[str, Convert] = {}
    for spec in fields:
        name = spec.get("name")
        if name == "org.apache.kafka.connect.data.Decimal":
            scale = -int(spec.get("parameters", {}).get("scale", "0"))

            def decimal(value: Any, scale: int = scale) -> Any:
                if value is None:
                    return None
                raw = base64.b64decode(value)
                return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(scale)

            converters[spec["field"]] = decimal
        elif name == "io.debezium.time.MicroTimestamp":

            def micros(value: Any) -> Any:
                return None if value is None else EPOCH + dt.timedelta(microseconds=value)

            converters[spec["field"]] = micros
    return converters.get("amount", _identity), converters.get("created_at", _identity)


def write_table(cur: Any, table: str, state: dict[int, Any], types: list[str]) -> None:
    """One table's net change in the open transaction: deletes, binary COPY, upsert.

    ``state`` maps ids to the row tuple to store or None (deleted); the rows go through the
    temporary ``stage_<table>``, which the caller created (``ON COMMIT DELETE ROWS``).
    """
    rows = [r for r in state.values() if r is not None]
    deletes = [k for k, r in state.items() if r is None]
    if deletes:
        cur.execute(f"DELETE FROM {table} WHERE id = ANY(%s)", (deletes,))
    if not rows:
        return
    with cur.copy(
        f"COPY stage_{table} (id, customer, email, qty, amount, created_at) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
    cur.execute(
        f"INSERT INTO {table} SELECT * FROM stage_{table} "
        "ON CONFLICT (id) DO UPDATE "
        "SET customer = EXCLUDED.customer, email = EXCLUDED.email, "
        "qty = EXCLUDED.qty, amount = EXCLUDED.amount, "
        "created_at = EXCLUDED.created_at"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated")
    parser.add_argument("--tables", required=True, help="comma-separated, one per topic")
    parser.add_argument("--dsn", required=True)
    parser.add_argument(
        "--ends", required=True, help="TOPIC:PARTITION:LAST_OFFSET, comma-separated"
    )
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--salt", required=True)
    parser.add_argument("--schema-block", action="store_true")
    args = parser.parse_args()

    base = hashlib.sha256(args.salt.encode() + b"\x00")

    def digest(text: str | None) -> str | None:
        if text is None:
            return None
        h = base.copy()
        h.update(text.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    topics = args.topics.split(",")
    tables = dict(zip(topics, args.tables.split(","), strict=True))
    ends: dict[tuple[str, int], int] = {}
    for item in args.ends.split(","):
        topic, part, last = item.rsplit(":", 2)
        if int(last) >= 0:
            ends[(topic, int(part))] = int(last)
    conn = psycopg.connect(args.dsn)
    conn.execute(
        'CREATE TABLE IF NOT EXISTS loop_offsets (topic text, part int, "offset" bigint, '
        "PRIMARY KEY (topic, part))"
    )
    for table in tables.values():
        conn.execute(f"CREATE TEMP TABLE stage_{table} (LIKE {table}) ON COMMIT DELETE ROWS")
    conn.commit()
    types = (
        ["int8", "text", "text", "int4", "numeric", "timestamp"]
        if args.schema_block
        else ["int8", "text", "text", "int8", "text", "int8"]
    )
    Batch = tuple[dict[str, dict[int, Any]], dict[tuple[str, int], int]]
    work: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
    failure: list[BaseException] = []
    transactions = [0]

    def writer() -> None:
        try:
            while (item := work.get()) is not None:
                states, offsets = item
                with conn.transaction(), conn.cursor() as cur:
                    for table, state in states.items():
                        write_table(cur, table, state, types)
                    cur.execute(
                        'INSERT INTO loop_offsets (topic, part, "offset") '
                        "SELECT unnest(%s::text[]), unnest(%s::int[]), unnest(%s::bigint[]) "
                        'ON CONFLICT (topic, part) DO UPDATE SET "offset" = EXCLUDED."offset"',
                        (
                            [t for t, _ in offsets],
                            [p for _, p in offsets],
                            list(offsets.values()),
                        ),
                    )
                transactions[0] += 1
        except BaseException as error:
            failure.append(error)
            while work.get() is not None:  # unblock the producer side
                pass

    thread = threading.Thread(target=writer, name="pg-writer")
    thread.start()

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "bench-loop",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # The same fetch settings as cdcflow's Kafka source defaults
            # (cdcflow/io/kafka/settings.py), so both read at the same pace: with librdkafka's
            # own defaults (fetch.queue.backoff.ms 1000) the loop stalls on large messages.
            "fetch.wait.max.ms": 100,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "queued.min.messages": 10_000,
            "queued.max.messages.kbytes": 16_384,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
    plain = msgspec.json.Decoder(Envelope).decode
    wrapped = msgspec.json.Decoder(Wrapped).decode
    last_schema = b""
    plans: dict[bytes, tuple[Convert, Convert]] = {}
    amount_of: Convert = _identity
    created_of: Convert = _identity
    remaining = set(ends)
    try:
        while remaining and not failure:
            messages = consumer.consume(args.batch, 0.5)
            if not messages:
                continue
            states: dict[str, dict[int, Any]] = {}
            offsets: dict[tuple[str, int], int] = {}
            for message in messages:
                if message.error() is not None:
                    raise RuntimeError(str(message.error()))
                if args.schema_block:
                    outer = wrapped(message.value())
                    schema = bytes(outer.schema)
                    if schema != last_schema:
                        if schema not in plans:
                            plans[schema] = _plan(schema)
                        amount_of, created_of = plans[schema]
                        last_schema = schema
                    envelope = outer.payload
                else:
                    envelope = plain(message.value())
                topic = message.topic()
                state = states.get(tables[topic])
                if state is None:
                    state = states[tables[topic]] = {}
                if envelope.op == "d":
                    assert envelope.before is not None
                    state[envelope.before.id] = None
                else:
                    a = envelope.after
                    assert a is not None
                    state[a.id] = (
                        a.id,
                        a.customer,
                        digest(a.email),
                        a.qty,
                        amount_of(a.amount),
                        created_of(a.created_at),
                    )
                partition = (topic, message.partition())
                offsets[partition] = message.offset()
                if message.offset() >= ends[partition]:
                    remaining.discard(partition)
            work.put((states, offsets))
    finally:
        work.put(None)
        thread.join()
        consumer.close()
        conn.close()
    if failure:
        raise failure[0]
    print(f"transactions {transactions[0]}")


if __name__ == "__main__":
    main()
