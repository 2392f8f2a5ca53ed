"""The durable state contract (cdcflow.core.state), for the memory and SQLite stores.

``reopen(step)`` gives a new store over the same storage: a restart. Uncommitted changes live
only in the store instance, so dropping it without a commit is a crash.
"""

from __future__ import annotations

import datetime as dt
import pickle
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcflow.core.state import MemoryState, MemoryStateStore, StateStore, decode_value, encode_value
from cdcflow.io.state_store import POSITIONS_TABLE, VALUES_TABLE, SqliteStateStore
from cdcflow.schemas.model import Position

BIG = int("49" + "7" * 125 + "31")  # 129 digits, like a Kinesis sequence number
SHARD = ("customers-stream", "shardId-000000000007")

Reopen = Callable[..., StateStore]


@pytest.fixture(params=["memory", "sqlite"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    opened: list[StateStore] = []
    backend = MemoryState()

    def make(step: str = "join", pipeline: str = "shop") -> StateStore:
        store: StateStore
        if request.param == "memory":
            store = MemoryStateStore(pipeline, step, backend)
        else:
            store = SqliteStateStore(tmp_path / "state.sqlite", pipeline, step)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_uncommitted_puts_are_lost_on_reopen(reopen: Reopen) -> None:
    store = reopen()
    store.put("customers", "1", {"name": "Ada"})
    store.commit({SHARD: 10})
    store.put("customers", "2", {"name": "Bob"})  # never committed: the process dies
    store.delete("customers", "1")
    assert store.get("customers", "2") == {"name": "Bob"}  # the store reads its own writes
    assert store.get("customers", "1") is None
    restored = reopen()
    assert restored.get("customers", "1") == {"name": "Ada"}
    assert restored.get("customers", "2") is None
    assert restored.positions() == {SHARD: 10}


def test_positions_are_recorded_with_the_state(reopen: Reopen) -> None:
    store = reopen()
    assert store.positions() == {}
    store.put("customers", "1", "v1")
    store.commit({SHARD: BIG})
    store.put("customers", "1", "v2")
    store.commit({SHARD: BIG + 5, ("orders", "0"): 3})
    restored = reopen()
    assert restored.positions() == {SHARD: BIG + 5, ("orders", "0"): 3}
    assert restored.get("customers", "1") == "v2"
    # a restored step skips what its state already includes
    assert restored.covers(Position(SHARD[0], SHARD[1], BIG + 5))
    assert not restored.covers(Position(SHARD[0], SHARD[1], BIG + 6))
    assert restored.covers(Position("orders", 0, 2))
    assert not restored.covers(Position("orders", 1, 0))


def test_replay_after_a_crash_applies_each_input_once(reopen: Reopen) -> None:
    """A counting step: input replayed after a crash is skipped by the committed positions."""

    def apply(store: StateStore, offsets: range, commit: bool) -> None:
        for offset in offsets:
            if store.covers(Position(SHARD[0], SHARD[1], offset)):
                continue
            store.put("counts", b"k", store.get("counts", b"k", 0) + 1)
        if commit:
            store.commit({SHARD: offsets[-1]})

    apply(reopen(), range(BIG, BIG + 10), commit=True)
    apply(reopen(), range(BIG + 10, BIG + 20), commit=False)  # crash before the commit
    store = reopen()
    apply(store, range(BIG, BIG + 20), commit=True)  # the source replays everything
    assert reopen().get("counts", b"k") == 20


def test_offsets_order_numerically_and_only_move_forward(reopen: Reopen) -> None:
    store = reopen()
    store.commit({SHARD: 9 * 10**59})
    store.commit({SHARD: 10**60})
    store.commit({SHARD: 9 * 10**59})
    assert reopen().positions() == {SHARD: 10**60}


def test_rollback_and_commit_without_changes(reopen: Reopen) -> None:
    store = reopen()
    store.put("ns", "a", 1)
    assert store.dirty
    store.rollback()
    assert not store.dirty and store.get("ns", "a") is None
    store.commit({SHARD: 1})
    assert reopen().positions() == {SHARD: 1}


def test_a_malformed_position_commits_nothing(reopen: Reopen) -> None:
    store = reopen()
    store.put("ns", "a", 1)
    with pytest.raises(TypeError):
        store.commit({("t", 0): 1})  # type: ignore[dict-item]
    assert store.dirty  # still buffered: the step may fix its positions and commit again
    assert reopen().get("ns", "a") is None and reopen().positions() == {}


def test_steps_pipelines_and_namespaces_are_apart(reopen: Reopen) -> None:
    join, dedup, other = reopen("join"), reopen("dedup"), reopen("join", pipeline="other")
    join.put("orders", "1", "join-orders")
    join.put("customers", "1", "join-customers")
    join.commit({SHARD: 1})
    dedup.put("orders", "1", "dedup")
    dedup.commit({SHARD: 2})
    assert reopen("join").get("orders", "1") == "join-orders"
    assert reopen("join").get("customers", "1") == "join-customers"
    assert reopen("dedup").get("orders", "1") == "dedup"
    assert reopen("dedup").get("customers", "1") is None
    assert reopen("join").positions() == {SHARD: 1}
    assert reopen("dedup").positions() == {SHARD: 2}
    assert other.get("orders", "1") is None and other.positions() == {}


def test_str_and_bytes_keys_are_different_and_keep_their_type(reopen: Reopen) -> None:
    store = reopen()
    store.put("ns", "123", "text")
    store.put("ns", b"123", "bytes")
    store.commit({})
    restored = reopen()
    assert restored.get("ns", "123") == "text"
    assert restored.get("ns", b"123") == "bytes"
    assert dict(restored.items("ns")) == {"123": "text", b"123": "bytes"}
    with pytest.raises(TypeError):
        restored.put("ns", 123, "int key")  # type: ignore[arg-type]


def test_items_merge_committed_and_buffered_changes(reopen: Reopen) -> None:
    store = reopen()
    store.put("ns", "a", 1)
    store.put("ns", "b", 2)
    store.put("other", "z", 0)
    store.commit({})
    store.delete("ns", "a")
    store.put("ns", "c", 3)
    assert dict(store.items("ns")) == {"b": 2, "c": 3}


VALUES = {
    "decimal": Decimal("10.20"),
    "naive": dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
    "aware": dt.datetime(2024, 1, 15, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "date": dt.date(2024, 1, 15),
    "time": dt.time(10, 30, 0, 5),
    "huge": BIG,
    "negative": -(2**80),
    "tuple": (1, "a", (Decimal("1"), None)),
    "nested": {"a": [1, 2.5, b"\x00\xff", True, None], "k": {"x": Decimal("-0.000")}},
}


def test_values_round_trip_exactly(reopen: Reopen) -> None:
    store = reopen()
    store.put("ns", "v", VALUES)
    store.commit({SHARD: BIG})
    restored = reopen().get("ns", "v")
    assert restored == VALUES
    assert str(restored["decimal"]) == "10.20"
    assert restored["naive"].tzinfo is None
    assert restored["aware"].utcoffset() == dt.timedelta(hours=2)
    assert type(restored["tuple"]) is tuple and type(restored["date"]) is dt.date


def test_a_stored_value_is_a_copy(reopen: Reopen) -> None:
    store = reopen()
    value = {"items": [1]}
    store.put("ns", "v", value)
    value["items"].append(2)
    got = store.get("ns", "v")
    got["items"].append(3)
    assert store.get("ns", "v") == {"items": [1]}


def test_encode_value_refuses_objects() -> None:
    with pytest.raises(TypeError, match="plain data"):
        encode_value({"x": object()})
    with pytest.raises(TypeError):
        encode_value({1, 2})
    with pytest.raises(TypeError, match="dict key"):
        encode_value({(1, 2): "tuple keys are not msgpack map keys"})
    assert decode_value(encode_value({1: "a", b"k": "b", None: "c"})) == {
        1: "a",
        b"k": "b",
        None: "c",
    }
    assert decode_value(encode_value(VALUES)) == VALUES


def test_sqlite_layout_keeps_offsets_as_text_and_values_as_msgpack(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SqliteStateStore(path, "shop", "join") as store:
        store.put("ns", "k", {"a": 1})
        store.commit({SHARD: BIG})
    with sqlite3.connect(path) as conn:
        offset, kind = conn.execute(
            f'SELECT "offset", typeof("offset") FROM {POSITIONS_TABLE}'
        ).fetchone()
        value = conn.execute(f"SELECT value FROM {VALUES_TABLE}").fetchone()[0]
    assert (offset, kind) == (str(BIG), "text")
    assert decode_value(value) == {"a": 1}


def test_sqlite_store_pickles_and_reopens(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.sqlite", "shop", "join")
    store.put("ns", "k", 1)
    store.commit({SHARD: 1})
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get("ns", "k") == 1 and copy.positions() == {SHARD: 1}


def test_sqlite_commit_killed_mid_transaction_keeps_the_previous_commit(tmp_path: Path) -> None:
    """Killed after the values were written but before COMMIT: neither values nor positions."""
    path = tmp_path / "s.sqlite"
    with SqliteStateStore(path, "shop", "join") as store:
        store.put("ns", "k", "old")
        store.commit({SHARD: 1})
    child = textwrap.dedent(
        f"""
        import os
        from cdcflow.io.state_store import SqliteStateStore
        store = SqliteStateStore({str(path)!r}, "shop", "join")
        real = store.file.transaction

        def dying_transaction():
            class Dying:
                def __enter__(self):
                    self.inner = real()
                    self.conn = self.inner.__enter__()
                    return self
                def execute(self, *a):
                    return self.conn.execute(*a)
                def executemany(self, *a):
                    return self.conn.executemany(*a)
                def __exit__(self, *exc):
                    os._exit(9)  # every statement ran; the COMMIT never does
            return Dying()

        store.file.transaction = dying_transaction
        store.put("ns", "k", "new")
        store.put("ns", "k2", "new")
        store.commit({{{SHARD!r}: {BIG}}})
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr
    restored = SqliteStateStore(path, "shop", "join")
    assert restored.get("ns", "k") == "old" and restored.get("ns", "k2") is None
    assert restored.positions() == {SHARD: 1}


_offsets = st.builds(
    dt.timezone,
    st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**130)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.dates()
    | st.times()
    | st.times(timezones=_offsets)
    | st.datetimes()
    | st.datetimes(timezones=_offsets)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=5) | st.integers(0, 99), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(_values)
def test_any_plain_value_round_trips_with_its_types(value: object) -> None:
    back = decode_value(encode_value(value))
    assert back == value
    assert _shape(back) == _shape(value)


def _shape(value: object) -> object:
    """The value with every leaf replaced by its type and text, so 1 == 1.0 == True differ."""
    if isinstance(value, dict):
        return {repr(k): _shape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(v) for v in value])
    return (type(value).__name__, repr(value))
