"""The JSON decoder's typed path gives exactly what its generic path gives.

:class:`DebeziumJsonDecoder` decodes a change envelope into a typed struct when it can (the
typed path, ``decoder.typed``) and parses into dicts otherwise (the generic path). These tests
decode the same message sequences with the typed path on and off and require identical
results: equal events and markers, or the same :class:`DecodeError` reason; and through the
decode step, equal batches and dead letters. The corpus: every fixture message, and
randomized valid and invalid messages (schema blocks, unwrapped records, tombstones, markers,
TOAST placeholders, MongoDB, keys of every form, broken JSON, non-UTF-8 bytes, deep nesting,
fields of the wrong type, unknown fields).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdcflow.errors import DecodeError
from cdcflow.schemas.debezium import DebeziumJsonDecoder
from cdcflow.schemas.model import Position, RawBatch, RawRecord
from cdcflow.transforms.decode import DecodeStep

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "debezium"
PLACEHOLDER = "__debezium_unavailable_value"
PLACEHOLDER_B64 = "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
DECIMAL = "org.apache.kafka.connect.data.Decimal"

Message = tuple[bytes | None, bytes | None]


def outcome(decoder: DebeziumJsonDecoder, value: bytes | None, key: bytes | None, i: int) -> Any:
    """The decoded value, or ("error", reason): what the two paths must agree on."""
    try:
        return decoder.decode(
            value, Position("shop.public.t", 0, i), key=key, topic="shop.public.t"
        )
    except DecodeError as exc:
        return ("error", str(exc))


def assert_same(messages: list[Message], **options: Any) -> None:
    """Decode ``messages`` with the typed path on (with and without its back-off) and off."""
    typed = DebeziumJsonDecoder(**options)
    eager = DebeziumJsonDecoder(**options)  # tries the typed path on every message
    generic = DebeziumJsonDecoder(**options)
    generic.typed = False
    for i, (value, key) in enumerate(messages):
        expected = outcome(generic, value, key, i)
        assert outcome(typed, value, key, i) == expected, (value, key)
        eager._typed_skip = 0
        assert outcome(eager, value, key, i) == expected, (value, key)


def fixture_messages() -> list[Message]:
    messages: list[Message] = []
    for path in sorted(FIXTURES.rglob("*.jsonl")):
        if path.name.endswith(".keys.jsonl") or path.name == "keys.jsonl":
            continue
        values = path.read_bytes().splitlines()
        keys_path = path.with_name(path.name.replace(".jsonl", ".keys.jsonl"))
        if path.name == "schemaless.jsonl" and (path.parent / "keys.jsonl").exists():
            keys_path = path.parent / "keys.jsonl"
        keys: list[bytes | None] = [None] * len(values)
        if keys_path.exists():
            keys = list(keys_path.read_bytes().splitlines())
            keys += [None] * (len(values) - len(keys))
        messages.extend(zip(values, keys[: len(values)], strict=True))
    return messages


def test_fixture_messages_decode_the_same_on_both_paths() -> None:
    messages = fixture_messages()
    assert len(messages) > 50
    assert_same(messages)
    assert_same(messages, key_columns={"*": ["id"]}, tombstones="delete")
    # Each message on its own too (no schema or backoff state carried over).
    for message in messages:
        assert_same([message])


def test_the_typed_path_is_taken_for_plain_envelopes() -> None:
    decoder = DebeziumJsonDecoder()
    value = json.dumps(
        {"op": "c", "after": {"id": 1}, "source": {"table": "t"}, "ts_ms": 1, "ts_us": 1000}
    ).encode()
    typed = decoder._typed(value, value, 0, None, Position("t", 0, 0), None, None)
    assert typed is not None and typed.after == {"id": 1}
    # A field the struct does not name sends the message down the generic path.
    unknown = value[:-1] + b',"extra":[1]}'
    assert decoder._typed(unknown, unknown, 0, None, Position("t", 0, 0), None, None) is None


# -- randomized corpus ---------------------------------------------------------------------

ROW_FIELDS = [
    {"field": "id", "type": "int64", "optional": False},
    {"field": "name", "type": "string", "optional": True},
    {
        "field": "price",
        "type": "bytes",
        "optional": True,
        "name": DECIMAL,
        "parameters": {"scale": "2"},
    },
    {"field": "ts", "type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp"},
    {"field": "tags", "type": "array", "optional": True, "items": {"type": "string"}},
]
SCHEMA = {
    "type": "struct",
    "name": "shop.public.t.Envelope",
    "fields": [
        {"type": "struct", "fields": ROW_FIELDS, "optional": True, "field": "before"},
        {"type": "struct", "fields": ROW_FIELDS, "optional": True, "field": "after"},
        {"type": "struct", "fields": [{"field": "table", "type": "string"}], "field": "source"},
        {"field": "op", "type": "string", "optional": False},
        {"field": "ts_ms", "type": "int64", "optional": True},
    ],
}
KEY_SCHEMA = {"type": "struct", "fields": [{"field": "id", "type": "int64", "optional": False}]}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["x", "", "ünïcode", PLACEHOLDER, PLACEHOLDER_B64, "AQI=", "1e400"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)
    ),
    max_leaves=6,
)
row_values = {
    "id": st.one_of(st.integers(min_value=-5, max_value=5), values),
    "name": st.one_of(st.text(max_size=5), st.just(PLACEHOLDER), values),
    "price": st.one_of(st.sampled_from(["AQI=", "12.5", PLACEHOLDER_B64]), values),
    "ts": st.one_of(st.integers(min_value=0, max_value=2**40), values),
    "tags": st.one_of(st.just([PLACEHOLDER]), st.lists(st.text(max_size=3), max_size=2), values),
}
rows = st.one_of(
    st.none(),
    st.fixed_dictionaries({}, optional=row_values),
    st.fixed_dictionaries(
        {"id": st.integers(min_value=0, max_value=9)},
        optional={name: strategy for name, strategy in row_values.items() if name != "id"},
    ),
    values,
    st.just('{"_id": {"$oid": "5f1e2d3c4b5a697887766554"}, "a": 1}'),
)
sources = st.one_of(
    st.none(),
    values,
    st.fixed_dictionaries(
        {},
        optional={
            "connector": st.sampled_from(["postgresql", "mongodb", "mysql"]),
            "db": st.one_of(st.just("shop"), values),
            "schema": st.just("public"),
            "table": st.one_of(st.just("t"), values),
            "collection": st.just("c"),
            "ts_ms": st.one_of(st.integers(min_value=0, max_value=10**13), values),
            "snapshot": st.one_of(st.sampled_from(["true", "false", "last"]), st.booleans()),
            "lsn": st.integers(min_value=0, max_value=10**9),
            "sequence": st.just('["1","2"]'),
        },
    ),
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "op": st.one_of(st.sampled_from(["c", "u", "d", "r", "t", "x"]), values),
        "before": rows,
        "after": rows,
        "source": sources,
        "ts_ms": st.one_of(st.integers(min_value=0, max_value=10**13), values),
        "ts_us": st.integers(min_value=0),
        "transaction": st.one_of(
            st.none(),
            values,
            st.fixed_dictionaries(
                {"id": st.one_of(st.just("tx1"), values)},
                optional={"total_order": values, "data_collection_order": values},
            ),
        ),
        "updateDescription": st.just({"updatedFields": '{"a": 1}', "removedFields": []}),
        "__op": st.sampled_from(["c", "d"]),
        "__table": st.just("t"),
        "status": st.just("BEGIN"),
        "id": st.just("tx"),
        "extra": values,
    },
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


@st.composite
def messages(draw: st.DrawFn) -> Message:
    payload = draw(envelopes)
    shape = draw(st.sampled_from(["plain", "schema", "payload-only", "spaced", "raw", "deep"]))
    if shape == "schema":
        value = json.dumps({"schema": SCHEMA, "payload": payload}, separators=(",", ":"))
    elif shape == "payload-only":
        value = json.dumps({"payload": payload})
    elif shape == "spaced":
        value = json.dumps({"payload": payload, "schema": SCHEMA}, indent=1)
    elif shape == "deep":
        payload["after"] = {
            "id": 1,
            "deep": _nested(draw(st.integers(min_value=190, max_value=210))),
        }
        value = json.dumps(payload)
    else:
        value = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    raw: bytes | None = value.encode()
    if shape == "raw":
        raw = draw(
            st.sampled_from(
                [
                    None,
                    b"",
                    b"  ",
                    b"null",
                    b'{"schema":null,"payload":null}',
                    b"[1,2]",
                    b'"text"',
                    b'{"op":"c","after":{"id":1}',
                    b'{"op":"c","after":{"id":"\xff"}}',
                    b'{"op":"c","after":{"id":1},"ts_us":"\xff\xfe"}',
                    b'{"op":"c","op":"u","after":{"id":1},"after":null}',
                    b'{"op":"c","after":{"id":1}} trailing',
                    b'{"status":"END","id":"tx","event_count":1}',
                    b'{"ts_ms":5}',
                    b'{"ddl":"CREATE TABLE t","databaseName":"shop"}',
                ]
            )
        )
    key = draw(
        st.one_of(
            st.none(),
            st.just(b'{"id":1}'),
            st.integers(min_value=0, max_value=3).map(lambda n: b'{"id":%d}' % n),
            st.just(b"42"),
            st.just(b'"text"'),
            st.just(b""),
            st.just(b"{broken"),
            st.just(
                b'{"schema":'
                + json.dumps(KEY_SCHEMA, separators=(",", ":")).encode()
                + b',"payload":{"id":7}}'
            ),
            st.just(
                b'{"schema":'
                + json.dumps(KEY_SCHEMA, separators=(",", ":")).encode()
                + b',"payload":{"id":"7"}}'
            ),
            st.just(
                b'{"schema":'
                + json.dumps(KEY_SCHEMA, separators=(",", ":")).encode()
                + b',"payload":null}'
            ),
            st.just(b'{"id":"{\\"$oid\\": \\"5f1e2d3c4b5a697887766554\\"}"}'),
        )
    )
    return raw, key


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=12), st.booleans())
def test_random_messages_decode_the_same_on_both_paths(batch: list[Message], keyed: bool) -> None:
    assert_same(batch, key_columns={"shop.*": ["id"]} if keyed else None)


def test_a_long_random_stream_gives_the_same_batches_and_dead_letters() -> None:
    """Through the decode step: same events, markers and dead letters, typed on and off."""
    rnd = random.Random(12)
    stream: list[Message] = []
    base = fixture_messages()
    for _ in range(600):
        value, key = rnd.choice(base)
        if value and rnd.random() < 0.3:
            # Corrupt a byte: invalid JSON, other types, other kinds of message.
            at = rnd.randrange(len(value))
            value = value[:at] + bytes([rnd.choice(b'{}[]":,0a\xff ')]) + value[at + 1 :]
        stream.append((value, key))
    records = [
        RawRecord(key=key, value=value, position=Position("shop.public.t", 0, i))
        for i, (value, key) in enumerate(stream)
    ]
    batch = RawBatch("shop.public.t", 0, records, len(records) - 1)
    typed_step, generic_step = DecodeStep(), DecodeStep()
    generic_step.setup()
    generic_step._decoder.typed = False
    typed_result, generic_result = typed_step.process(batch), generic_step.process(batch)
    assert typed_result.batch == generic_result.batch
    assert [(d.reason, d.position, d.value, d.key) for d in typed_result.dead_letters] == [
        (d.reason, d.position, d.value, d.key) for d in generic_result.dead_letters
    ]
    assert typed_result.dead_letters and typed_result.batch.events


@pytest.mark.parametrize("depth", [195, 199, 200, 201, 250])
def test_depth_limit_is_the_same_on_both_paths(depth: int) -> None:
    payload = {"op": "c", "after": {"id": 1, "deep": _nested(depth)}, "source": {"table": "t"}}
    assert_same([(json.dumps(payload).encode(), None)])
    wrapped = {"schema": SCHEMA, "payload": payload}
    value = json.dumps(wrapped, separators=(",", ":")).encode()
    assert_same([(value, None), (value, None)])
