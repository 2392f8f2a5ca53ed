"""The hot-path benchmark's workload: its hash is cdcflow's and its expected state is consistent.

The benchmark compares cdcflow's table with a state it computes itself; these tests pin that the
computation matches what cdcflow's ``hash-sha256`` produces and what the messages say.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from cdcflow.transforms.redact.config import StrategyOptions
from cdcflow.transforms.redact.policy import compile_value_fn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from hot_path_workload import (
    decimal_b64,
    expected_state,
    generate,
    sha256_hex,
    table_names,
    topics,
)

SALT = "a-salt-of-sixteen-or-more"


def test_the_benchmark_hash_is_cdcflows_hash_sha256() -> None:
    fn = compile_value_fn(StrategyOptions(strategy="hash-sha256"), "rule", salt=SecretStr(SALT))
    for text in ("ada@example.com", "", "ünïcode@exämple.org"):
        assert sha256_hex(SALT, text) == fn(text)


def test_decimal_wire_form_round_trips() -> None:
    for cents in (0, 1, -1, 127, 128, -129, 10**9):
        raw = base64.b64decode(decimal_b64(cents))
        assert int.from_bytes(raw, "big", signed=True) == cents


@pytest.mark.parametrize("tables", [1, 3])
def test_expected_state_replays_the_messages(tables: int) -> None:
    work = generate(2000, 150, 3, schema_block=True, seed=5, tables=tables)
    names = table_names(tables)
    rows: dict[int, dict] = {}
    used: set[tuple[int, int]] = set()
    for table, partition, key, value in work.messages:
        payload = json.loads(value)["payload"]
        ident = json.loads(key)["payload"]["id"]
        assert table == ident % tables and payload["source"]["table"] == names[table]
        assert partition == (ident // tables) % 3
        used.add((table, partition))
        if payload["op"] == "d":
            rows.pop(ident)
        else:
            rows[ident] = payload["after"]
    assert len(used) == 3 * tables  # every partition of every topic gets messages
    expected = expected_state(work, SALT, schema_block=True)
    assert list(expected) == names
    assert {i for table in expected.values() for i in table} == set(rows)
    for ident, row in rows.items():
        customer, email, qty, amount, created = expected[names[ident % tables]][ident]
        assert (customer, email, qty) == (
            row["customer"],
            sha256_hex(SALT, row["email"]),
            row["qty"],
        )
        unscaled = int.from_bytes(base64.b64decode(row["amount"]), "big", signed=True)
        assert amount == Decimal(unscaled).scaleb(-2)
        assert created == dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=row["created_at"])
    assert sum(work.counts.values()) == 2000 and work.counts["d"] > 0


def test_one_table_keeps_the_historic_names() -> None:
    assert (table_names(1), topics(1)) == (["orders"], ["shop.public.orders"])
    assert topics(2) == ["shop.public.orders_00", "shop.public.orders_01"]
