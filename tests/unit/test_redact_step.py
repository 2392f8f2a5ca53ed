"""The redact step on event batches: rules, allow-lists, scanning, keys, dead letters, metrics."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import msgspec
import pytest

from cdcflow.core.step import event_dead_letter, raw_dead_letter
from cdcflow.metrics import Counters, prometheus_text
from cdcflow.schemas.canonical import dead_letter_dict, dumps, event_dict
from cdcflow.schemas.model import (
    ChangeEvent,
    Column,
    DeadLetter,
    EventBatch,
    Op,
    Position,
    TableId,
    TableSchema,
    Tombstone,
)
from cdcflow.transforms.redact import RedactConfig, RedactStep

KEY = "Zq8Wv1Xk4Lr7Tn2Pm5Hs0Jd3"
SALT = "Ys6Ub9Ie2Oa5Qw8Rt1Fg4Hj7"
CUSTOMERS = TableId("shop", "public", "customers")
TICKETS = TableId("shop", "public", "tickets")


def step(**data: Any) -> RedactStep:
    config = RedactConfig.model_validate({"type": "redact", "key": KEY, "salt": SALT, **data})
    built = RedactStep(config)
    built.setup()
    return built


def event(
    table: TableId = CUSTOMERS,
    op: Op = Op.CREATE,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None,
    offset: int = 0,
    **extra: Any,
) -> ChangeEvent:
    return ChangeEvent(
        op=op,
        table=table,
        position=Position("shop.public.customers", 0, offset),
        key=key,
        before=before,
        after=after,
        **extra,
    )


def run(s: RedactStep, *events: ChangeEvent, **batch: Any) -> tuple[EventBatch, list[DeadLetter]]:
    result = s.process(
        EventBatch(
            stream="shop.public.customers",
            partition=0,
            last_offset=99,
            events=list(events),
            **batch,
        )
    )
    return result.batch, result.dead_letters


ADA = {
    "id": 1,
    "email": "ada@example.com",
    "phone": "+44 20 7946 0018",
    "full_name": "Ada Lovelace",
    "credit_limit": "1000.00",
    "birth_date": dt.date(1815, 12, 10),
}

RULES = [
    {
        "table": "shop.public.customers",
        "columns": ["email"],
        "strategy": "mask",
        "keep_first": 1,
        "keep_domain": True,
    },
    {"table": "shop.public.customers", "columns": ["phone"], "strategy": "tokenize"},
    {"table": "shop.public.customers", "columns": ["credit_*"], "strategy": "drop"},
    {
        "table": "shop.public.customers",
        "column_regex": "birth_.*",
        "strategy": "generalize",
        "granularity": "year",
    },
]


def test_column_rules_apply_to_before_after_and_key() -> None:
    s = step(
        rules=[
            *RULES,
            {"table": "shop.public.customers", "columns": ["id"], "strategy": "hmac-sha256"},
        ]
    )
    updated = {**ADA, "email": "ada.l@example.com"}
    batch, dead = run(s, event(op=Op.UPDATE, before=ADA, after=updated, key={"id": 1}))
    assert dead == []
    (out,) = batch.events
    assert out.after is not None and out.before is not None and out.key is not None
    assert out.before["email"] == "a**@example.com"
    assert out.after["email"] == "a****@example.com"
    assert out.after["phone"].startswith("tok_") and out.after["phone"] == out.before["phone"]
    assert "credit_limit" not in out.after and "credit_limit" not in out.before
    assert out.after["birth_date"] == dt.date(1815, 1, 1)
    assert out.after["full_name"] == "Ada Lovelace"  # no rule
    assert out.key["id"] == out.after["id"] != 1
    assert len(out.key["id"]) == 64
    # The input event is not modified.
    assert ADA["email"] == "ada@example.com"


def test_tables_without_rules_pass_unchanged() -> None:
    s = step(rules=RULES)
    original = event(
        table=TableId("shop", "public", "products"), after={"id": 1, "email": "x@y.com"}
    )
    batch, _ = run(s, original)
    assert batch.events[0] is original


def test_the_first_matching_rule_wins() -> None:
    s = step(
        rules=[
            {"columns": ["email"], "strategy": "redact"},
            {"columns": ["*"], "strategy": "null"},
        ]
    )
    batch, _ = run(s, event(after={"email": "a@b.co", "other": "x"}))
    assert batch.events[0].after == {"email": "[REDACTED]", "other": None}


def test_allow_list_fails_closed() -> None:
    s = step(
        tables=[
            {"table": "shop.public.customers", "allow": ["id", "email"], "key_columns": ["id"]}
        ],
        rules=RULES,
    )
    batch, _ = run(
        s,
        event(
            after={**ADA, "added_later": "secret"}, key={"id": 1}, unavailable=("notes", "email")
        ),
    )
    (out,) = batch.events
    assert out.after == {"id": 1, "email": "a**@example.com"}
    assert out.key == {"id": 1}
    assert out.unavailable == ("email",)


def test_schema_follows_dropped_and_retyped_columns() -> None:
    schema = TableSchema(
        name="shop.public.customers.Value",
        fingerprint="abc",
        columns=(
            Column(name="id", type="int32", optional=False),
            Column(name="email", type="string"),
            Column(name="phone", type="string"),
            Column(
                name="credit_limit", type="bytes", logical="org.apache.kafka.connect.data.Decimal"
            ),
            Column(name="birth_date", type="int32", logical="io.debezium.time.Date"),
            Column(name="score", type="int32", optional=False),
        ),
        key_columns=("id",),
    )
    s = step(rules=[*RULES, {"columns": ["score"], "strategy": "tokenize"}])
    batch, _ = run(s, event(after={**ADA, "score": 5}, schema=schema))
    out_schema = batch.events[0].schema
    assert out_schema is not None
    names = [c.name for c in out_schema.columns]
    assert names == ["id", "email", "phone", "birth_date", "score"]
    score = out_schema.column("score")
    assert score is not None and score.type == "string" and score.logical is None
    birth = out_schema.column("birth_date")
    assert birth is not None and birth.logical == "io.debezium.time.Date"
    assert out_schema.fingerprint != "abc" and out_schema.fingerprint.startswith("abc+redacted:")
    # Cached: the same schema gives the same object.
    batch2, _ = run(s, event(after={**ADA, "score": 6}, schema=schema))
    assert batch2.events[0].schema is out_schema


def test_non_key_safe_treatment_of_a_key_column_dead_letters_the_event_redacted() -> None:
    s = step(rules=[{"columns": ["email"], "strategy": "mask", "keep_first": 1}])
    batch, dead = run(
        s,
        event(
            after={"email": "ada@example.com", "n": 1}, key={"email": "ada@example.com"}, offset=7
        ),
    )
    assert batch.events == []
    (letter,) = dead
    assert letter.step == "redact"
    assert letter.error_type == "RedactionError"
    assert "key column(s) ['email']" in letter.reason
    assert letter.position == Position("shop.public.customers", 0, 7)
    assert letter.event is not None
    assert letter.event["key"] == {"email": "a**************"}
    assert "ada@example.com" not in dumps(dead_letter_dict(letter)).decode()


def test_allow_list_dropping_a_key_column_dead_letters_the_event() -> None:
    s = step(tables=[{"table": "*", "allow": ["name"]}])
    _, dead = run(s, event(after={"id": 5, "name": "x"}, key={"id": 5}))
    (letter,) = dead
    assert "key column(s) ['id']" in letter.reason
    assert letter.event is not None and letter.event["key"] == {}


def test_a_value_a_strategy_cannot_handle_dead_letters_the_event_with_the_value_withheld() -> None:
    s = step(
        rules=[*RULES, {"columns": ["since"], "strategy": "generalize", "granularity": "month"}]
    )
    bad = {**ADA, "since": "last tuesday"}
    batch, dead = run(s, event(after=bad, key={"id": 1}), event(after=ADA, key={"id": 1}))
    assert len(batch.events) == 1
    (letter,) = dead
    assert "rules[4]" in letter.reason and "last tuesday" not in letter.reason
    assert letter.event is not None
    after = letter.event["after"]
    assert after["since"] is None
    assert after["email"] == "a**@example.com"
    assert "credit_limit" not in after


def test_scan_replaces_only_the_detected_text() -> None:
    s = step(
        tables=[
            {
                "table": "shop.public.tickets",
                "scan": True,
                "detect": {"replacement": "<{detector}>"},
            }
        ]
    )
    body = "Card 4111 1111 1111 1111, mail ada@example.com, call +44 20 7946 0018. Thanks!"
    batch, _ = run(s, event(table=TICKETS, after={"id": 1, "body": body, "n": 3}))
    assert batch.events[0].after == {
        "id": 1,
        "body": "Card <CARD>, mail <EMAIL>, call <PHONE>. Thanks!",
        "n": 3,
    }


def test_scan_walks_nested_values_and_numbers() -> None:
    s = step(tables=[{"table": "*", "scan": True}])
    doc = {"contacts": [{"mail": "x@example.org"}, "ok"], "card": 4111111111111111, "n": 12}
    batch, _ = run(s, event(after={"doc": doc}))
    after = batch.events[0].after
    assert after == {"doc": {"contacts": [{"mail": "[REDACTED]"}, "ok"], "card": None, "n": 12}}


@pytest.mark.parametrize(
    ("detect", "expected"),
    [
        ({"strategy": "null"}, None),
        ({"strategy": "redact", "scope": "value"}, "[REDACTED]"),
        ({"strategy": "mask", "keep_last": 2}, "mail *************om please"),
    ],
)
def test_scan_strategies_replace_the_match_or_the_value(
    detect: dict[str, Any], expected: Any
) -> None:
    s = step(tables=[{"table": "*", "scan": True, "detect": detect}])
    batch, _ = run(s, event(after={"t": "mail ada@example.com please"}))
    assert batch.events[0].after == {"t": expected}


def test_scan_drop_removes_the_column() -> None:
    s = step(tables=[{"table": "*", "scan": True, "detect": {"strategy": "drop"}}])
    batch, _ = run(s, event(after={"t": "mail ada@example.com", "u": "fine"}))
    assert batch.events[0].after == {"u": "fine"}


def test_scan_in_a_key_needs_a_key_safe_detect_strategy() -> None:
    unsafe = step(tables=[{"table": "*", "scan": True}])
    _, dead = run(unsafe, event(after={"email": "a@b.co"}, key={"email": "a@b.co"}))
    assert len(dead) == 1 and "not key-safe" in dead[0].reason
    safe = step(tables=[{"table": "*", "scan": True, "detect": {"strategy": "tokenize"}}])
    batch, dead = run(safe, event(after={"email": "a@b.co"}, key={"email": "a@b.co"}))
    assert dead == []
    out = batch.events[0]
    assert out.key == out.after and out.key is not None and out.key["email"].startswith("tok_")


def test_dead_letters_are_redacted_for_storage() -> None:
    s = step(rules=RULES, raw_dead_letters="keep")
    decoded = event_dead_letter("route", event(after=ADA, key={"id": 1}), ValueError("rejected"))
    raw = raw_dead_letter(
        "decode", ValueError("not JSON; starts with 'ada@example.com'"), None, b"{ada"
    )
    # Carried letters pass through the step itself untouched...
    batch, _ = run(s, dead_letters=[decoded, raw])
    assert batch.dead_letters == [decoded, raw]
    # ...and are redacted where they are stored.
    first = s.redact_dead_letter(decoded)
    second = s.redact_dead_letter(raw)
    assert first.event is not None
    assert first.event["after"]["email"] == "a**@example.com"
    assert "credit_limit" not in first.event["after"]
    assert decoded.event is not None and decoded.event["after"]["email"] == "ada@example.com"
    assert second.value == b"{ada"  # keep: the original bytes stay
    assert "ada@example.com" not in second.reason and "[REDACTED]" in second.reason
    # A letter produced after the step (a sink's) keeps its already-redacted event.
    assert s.redact_dead_letter(decoded, event=False).event == decoded.event


def test_raw_dead_letters_drop_removes_bytes_and_reason() -> None:
    s = step(rules=RULES, raw_dead_letters="drop")
    raw = raw_dead_letter("decode", ValueError("starts with 'Ada Lovelace'"), None, b"{x", b"k")
    letter = s.redact_dead_letter(raw)
    assert letter.value is None and letter.key is None
    assert "Ada" not in letter.reason and "withheld" in letter.reason


def test_tombstone_keys_are_redacted_by_the_stream_table() -> None:
    s = step(rules=[{"table": "shop.public.customers", "columns": ["id"], "strategy": "tokenize"}])
    tomb = Tombstone(position=Position("shop.public.customers", 0, 3), key={"id": 9})
    batch, _ = run(s, markers=[tomb])
    (marker,) = batch.markers
    assert isinstance(marker, Tombstone)
    assert marker.key is not None and marker.key["id"].startswith("tok_")


def test_counters_per_table_column_and_action() -> None:
    s = step(
        rules=RULES,
        tables=[
            {"table": "shop.public.customers", "allow": ["id", "email", "phone", "credit_limit"]}
        ],
    )
    run(s, event(after=ADA), event(after={**ADA, "phone": None}))
    labels = lambda column, action: (  # noqa: E731
        ("table", "shop.public.customers"),
        ("column", column),
        ("action", action),
    )
    assert s.metrics.value("redacted_values", labels("email", "mask")) == 2
    assert s.metrics.value("redacted_values", labels("phone", "tokenize")) == 1  # null not counted
    assert s.metrics.value("redacted_values", labels("credit_limit", "drop")) == 2
    assert s.metrics.value("redacted_values", labels("full_name", "not-allowed")) == 2
    drained = s.metrics.drain()
    assert sum(n for _, _, n in drained) == 2 + 1 + 2 + 2 + 2
    assert s.metrics.drain() == []


def test_detection_counters_name_the_detector() -> None:
    s = step(tables=[{"table": "*", "scan": True}])
    run(s, event(after={"t": "a@b.co and c@d.co, 4111111111111111"}))
    totals = {labels: n for (_, labels), n in s.metrics.totals().items()}
    assert (
        totals[(("table", "shop.public.customers"), ("column", "t"), ("action", "detect:email"))]
        == 2
    )
    assert (
        totals[(("table", "shop.public.customers"), ("column", "t"), ("action", "detect:card"))]
        == 1
    )


def test_secrets_never_reach_outputs_metrics_or_dead_letters() -> None:
    s = step(
        rules=[
            *RULES,
            {"columns": ["secret_*"], "strategy": "hmac-sha256"},
            {"columns": ["since"], "strategy": "generalize", "granularity": "year"},
        ],
        tables=[{"table": "*", "scan": True, "detect": {"strategy": "tokenize"}}],
    )
    values = {**ADA, "secret_a": "not a secret", "notes": "mail ada@example.com", "since": "?"}
    batch, dead = run(
        s,
        event(after=values, key={"id": 1}),
        event(after={**values, "since": "2020-01-01"}, key={"id": 2}),
    )
    stored = s.redact_dead_letter(raw_dead_letter("decode", ValueError("bad"), None, b"x"))
    assert len(batch.events) == 1 and len(dead) == 1
    outputs = [dumps(event_dict(e)).decode() for e in batch.events]
    outputs += [dumps(dead_letter_dict(d)).decode() for d in [*dead, stored]]
    outputs += [prometheus_text(s.metrics), repr(s), repr(s.metrics), repr(s.config), str(s.config)]
    outputs += [repr(s.policy.rules[0].fn), repr(vars(s.policy.rules[4]))]
    for text in outputs:
        assert KEY not in text
        assert SALT not in text


def test_the_step_pickles_without_its_compiled_policy() -> None:
    s = step(rules=RULES)
    run(s, event(after=ADA))
    clone = pickle.loads(pickle.dumps(s))
    assert clone._policy is None
    batch, _ = run(clone, event(after=ADA))
    assert batch.events[0].after is not None and batch.events[0].after["email"] == "a**@example.com"


def test_prometheus_text_parses_and_sums_sources() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    one, two = Counters(), Counters()
    one.inc("redacted_values", {"table": "t", "column": 'c"1', "action": "mask"}, 3)
    two.inc("redacted_values", {"table": "t", "column": 'c"1', "action": "mask"}, 2)
    two.inc("events", (), 7)
    text = prometheus_text([one, two])
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["cdcflow_redacted_values"].samples
    assert sample.value == 5 and sample.labels["column"] == 'c"1'
    assert families["cdcflow_events"].samples[0].value == 7
    with pytest.raises(ValueError):
        one.inc("x", (), -1)


def test_beam_apply_step_exports_the_counters() -> None:
    import apache_beam as beam
    from apache_beam.metrics import MetricsFilter

    from cdcflow.beam.transforms import EVENTS, NAMESPACE, ApplyStep

    s = RedactStep(RedactConfig.model_validate({"type": "redact", "key": KEY, "rules": RULES}))
    batch = EventBatch(
        stream="s",
        partition=0,
        last_offset=1,
        events=[event(after=ADA), event(after=ADA, offset=1)],
    )
    pipeline = beam.Pipeline(runner="DirectRunner")
    out = (pipeline | beam.Create([batch]) | ApplyStep(s, carry=True))[EVENTS]
    _ = out | beam.Map(lambda b: len(b.events))
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    values = {c.key.metric.name: c.committed for c in counters}
    name = "redacted_values{table=shop.public.customers,column=email,action=mask}"
    assert values.get(name) == 2, sorted(values)


def test_struct_replace_keeps_other_event_fields() -> None:
    s = step(rules=RULES)
    original = event(after=ADA, ts_ms=5, meta={"lsn": 1})
    batch, _ = run(s, original)
    out = batch.events[0]
    assert (out.ts_ms, out.meta, out.position, out.op) == (
        5,
        {"lsn": 1},
        original.position,
        Op.CREATE,
    )
    assert msgspec.structs.asdict(out).keys() == msgspec.structs.asdict(original).keys()


def test_a_catch_all_empty_allow_list_fails_closed_on_unknown_tables() -> None:
    s = step(
        tables=[
            {"table": "shop.public.customers", "allow": ["id", "email"], "key_columns": ["id"]},
            {"table": "*", "allow": []},
        ]
    )
    batch, dead = run(
        s,
        event(after={"id": 1, "email": "a@b.co", "x": 1}, key={"id": 1}),
        event(table=TICKETS, after={"id": 2, "body": "secret"}, key={"id": 2}),
    )
    assert [e.table for e in batch.events] == [CUSTOMERS]
    (letter,) = dead
    assert letter.event is not None
    assert letter.event["after"] == {} and letter.event["key"] == {}
