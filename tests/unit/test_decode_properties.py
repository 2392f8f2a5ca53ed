"""Property tests over ``cdcflow decode`` (issue 9): valid envelopes of every connector flavour,
with and without the schema block, and unwrapped records, mixed with mutated copies.

Each valid message is generated together with its expected decoded form, computed here from
the generated values (not by the decoder). The properties:

* one output object per non-blank input line, in input order, and never a traceback;
* every unmutated line decodes exactly to its expected form (decimals as text with exactly
  the schema's scale);
* a mutation whose outcome is certain (truncation, a missing ``op``, a type swap or a value
  out of range under a schema, nesting beyond the limit) is an error object of type
  ``DecodeError``; a byte flip may decode or fail, but a change it yields still carries
  decimals with exactly their scale.
"""

from __future__ import annotations

import base64
import json
from decimal import Context, Decimal
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdcflow.cli.app import main

DECIMAL = "org.apache.kafka.connect.data.Decimal"

#: connector -> (source block naming the table, the table's name in the output)
FLAVOURS: dict[str, tuple[dict[str, Any], str]] = {
    "postgresql": (
        {"db": "shop", "schema": "public", "table": "items", "lsn": 42},
        "shop.public.items",
    ),
    "mysql": ({"db": "shop", "table": "items", "file": "binlog.000003", "pos": 7}, "shop.items"),
    "sqlserver": ({"db": "shop", "schema": "dbo", "table": "items", "change_lsn": "0:1:2"},
                  "shop.dbo.items"),
    "oracle": ({"db": "ORCL", "schema": "SHOP", "table": "ITEMS", "scn": "99"}, "ORCL.SHOP.ITEMS"),
    "mongodb": ({"db": "shop", "collection": "items", "ord": 1}, "shop.items"),
}  # fmt: skip


def _unscaled_b64(unscaled: int) -> str:
    length = unscaled.bit_length() // 8 + 1
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def _row_schema(scale: int) -> list[dict[str, Any]]:
    return [
        {"field": "id", "type": "int32", "optional": False},
        {"field": "name", "type": "string", "optional": True},
        {"field": "flag", "type": "boolean", "optional": True},
        {"field": "big", "type": "int64", "optional": True},
        {"field": "price", "type": "bytes", "optional": True, "name": DECIMAL,
         "parameters": {"scale": str(scale)}},
    ]  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """One valid message: (line bytes, expected decoded fields, facts for the mutations)."""
    connector = draw(st.sampled_from(sorted(FLAVOURS)))
    shape = draw(st.sampled_from(["schemaless", "schema", "unwrapped"]))
    if connector == "mongodb" and shape != "schemaless":
        shape = "schemaless"
    source_fields, table = FLAVOURS[connector]
    scale = draw(st.integers(0, 6))
    unscaled = draw(st.integers(-(10**30), 10**30))
    price = Decimal(unscaled).scaleb(-scale, Context(prec=100))  # no rounding at 28 digits
    row_id = draw(st.integers(-(2**31), 2**31 - 1))
    name = draw(st.one_of(st.none(), st.text(max_size=8)))
    flag = draw(st.one_of(st.none(), st.booleans()))
    big = draw(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)))
    op = draw(st.sampled_from(["c", "u", "d", "r"]))
    numeric = draw(st.booleans())  # decimal.format=NUMERIC instead of base64
    source = {"connector": connector, "name": "srv", "ts_ms": 1700000000000, **source_fields}
    facts = {"schema": shape == "schema", "scale": scale, "envelope": shape != "unwrapped"}
    if connector == "mongodb":
        oid = draw(st.text("0123456789abcdef", min_size=24, max_size=24))
        doc = {"_id": {"$oid": oid}, "name": name, "n": {"$numberLong": str(row_id)}}
        expected_row = {"_id": oid, "name": name, "n": row_id}
        image = json.dumps(doc)
        before, after = (image, None) if op == "d" else (None, image)
        payload = {"op": op, "before": before, "after": after, "source": source, "ts_ms": 1}
        expected = {"op": op, "table": table, "key": {"_id": oid}}
        expected["before" if op == "d" else "after"] = expected_row
        return json.dumps(payload).encode(), expected, facts
    if shape == "schema":
        wire_price: Any = str(price) if numeric else _unscaled_b64(unscaled)
        expected_price: Any = format(price, "f")
    else:
        wire_price = expected_price = format(price, "f")  # schemaless: text, as sent
    row = {"id": row_id, "name": name, "flag": flag, "big": big, "price": wire_price}
    expected_row = dict(row, price=expected_price)
    if shape == "unwrapped":
        record = dict(row, __op=op, __db=source["db"], __table=source["table"])
        if "schema" in source_fields:
            record["__schema"] = source["schema"]
        if op == "d":
            record["__deleted"] = "true"
        expected = {"op": op, "table": table, "key": None}
        expected["before" if op == "d" else "after"] = expected_row
        return json.dumps(record).encode(), expected, facts
    before, after = (row, None) if op == "d" else (None, row)
    payload = {"op": op, "before": before, "after": after, "source": source, "ts_ms": 1}
    expected = {"op": op, "table": table, "key": None, "before": None, "after": None}
    expected["before" if op == "d" else "after"] = expected_row
    if shape == "schemaless":
        return json.dumps(payload).encode(), expected, facts
    fields = _row_schema(scale)
    schema = {
        "type": "struct",
        "name": f"srv.{table}.Envelope",
        "fields": [
            {"type": "struct", "fields": fields, "optional": True, "field": "before"},
            {"type": "struct", "fields": fields, "optional": True, "field": "after"},
            {"type": "struct", "fields": [], "optional": False, "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }
    text = json.dumps({"schema": schema, "payload": payload})
    if numeric:  # NUMERIC: the decimal is a JSON number, not text
        text = text.replace(f'"price": "{wire_price}"', f'"price": {wire_price}')
    return text.encode(), expected, facts


#: "none" weighs half: every example then checks several unmutated lines against the oracle.
MUTATIONS = ["none"] * 6 + ["truncate", "drop_op", "type_swap", "huge", "nest", "flip"]


def _mutate(line: bytes, facts: dict[str, Any], how: str, at: int) -> tuple[bytes, bool]:
    """The mutated line and whether it must fail to decode."""
    if how == "truncate":
        return line[: 1 + at % (len(line) - 1)], True
    if how == "drop_op" and facts["envelope"]:
        return line.replace(b'"op": ', b'"oq": '), True
    if how == "type_swap" and facts["schema"]:  # the int32 id sent as text
        swapped = line.replace(b'"id": ', b'"id": "', 1).replace(b', "name"', b'", "name"', 1)
        return swapped, True
    if how == "huge" and facts["schema"]:  # an id far beyond int32 (or invalid JSON)
        return line.replace(b'"id": ', b'"id": 1' + b"0" * 40, 1), True
    if how == "nest":
        return b"[" * 4000 + line + b"]" * 4000, True
    if how == "flip":
        index = at % len(line)
        flipped = line[index] ^ (1 << (at % 8))
        if flipped in b"\r\n":
            return line, False  # a line break would make two lines
        return line[:index] + bytes([flipped]) + line[index + 1 :], False
    return line, False


def _decimal_scales_ok(item: dict[str, Any], scale: int) -> bool:
    for image in (item.get("after"), item.get("before")):
        if isinstance(image, dict) and isinstance(image.get("price"), str):
            text = image["price"]
            places = len(text.split(".")[1]) if "." in text else 0
            if places != scale:
                return False
    return True


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(messages(), st.sampled_from(MUTATIONS), st.integers(0, 10**6), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
def test_decode_outputs_one_exact_object_per_line(cases: list[Any]) -> None:
    lines: list[bytes] = []
    checks: list[tuple[dict[str, Any], dict[str, Any], str, bool]] = []
    for (line, expected, facts), how, at, blank_before in cases:
        if blank_before:
            lines.append(b"   ")  # blank lines are skipped but count for line numbers
        mutated, must_fail = _mutate(line, facts, how, at)
        lines.append(mutated)
        changed = mutated != line
        checks.append((expected, facts, "none" if not changed else how, must_fail and changed))
    result = CliRunner().invoke(main, ["decode"], input=b"\n".join(lines) + b"\n")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stdout and "Traceback" not in result.stderr
    # split at "\n" only: str.splitlines() also breaks at U+0085 and U+2028 inside values
    out = [json.loads(x) for x in result.stdout_bytes.split(b"\n") if x]
    assert len(out) == len(checks)  # one object per non-blank line
    non_blank = [i for i, line in enumerate(lines) if line.strip()]
    for item, index, (expected, facts, how, must_fail) in zip(out, non_blank, checks, strict=True):
        if item["kind"] == "error":
            assert item["line"] == index + 1  # in order
            assert item["error_type"] == "DecodeError", item
            assert how != "none", item  # a valid line never fails
            continue
        assert item["position"]["offset"] == index
        assert not must_fail, (how, item)
        if item["kind"] == "change" and facts["schema"]:
            assert _decimal_scales_ok(item, facts["scale"]), item
        if how == "none":
            assert {k: item[k] for k in expected} == expected
