"""The position-store contract (cdcflow.core.positions), for the memory and SQLite stores.

Every contract test runs against both implementations; ``reopen`` gives a new store over the
same storage, which is how a restart (or a crash) is simulated.
"""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdcflow.core.positions import (
    MemoryPositionStore,
    PositionStore,
    check_positions,
    is_covered,
    merge_positions,
)
from cdcflow.errors import TransientSinkError
from cdcflow.io.position_store import TABLE, SqlitePositionStore
from cdcflow.schemas.model import ChangeEvent, EventBatch, Op, Position, TableId

#: A Kinesis-size sequence number: 129 decimal digits, far beyond 2**63 and a float's precision.
BIG = int("49" + "7" * 125 + "31")
SHARD = ("orders-stream", "shardId-000000000001")

Reopen = Callable[[], PositionStore]


@pytest.fixture(params=["memory", "sqlite"])
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Reopen]:
    opened: list[PositionStore] = []
    backend: dict[tuple[str, str], dict[tuple[str, str], int]] = {}

    def make() -> PositionStore:
        store: PositionStore
        if request.param == "memory":
            store = MemoryPositionStore(backend)
        else:
            store = SqlitePositionStore(tmp_path / "positions.sqlite")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_big_offset_and_string_partition_round_trip_exactly(reopen: Reopen) -> None:
    assert len(str(BIG)) == 129 and BIG > 2**63
    store = reopen()
    store.commit("shop", "events", {SHARD: BIG, ("orders", "0"): 7})
    store.close()
    stored = reopen().read("shop", "events")
    assert stored == {SHARD: BIG, ("orders", "0"): 7}
    assert type(stored[SHARD]) is int and stored[SHARD] == BIG


def test_offsets_are_ordered_numerically_not_as_text(reopen: Reopen) -> None:
    store = reopen()
    store.commit("p", "s", {SHARD: 9 * 10**59})
    store.commit("p", "s", {SHARD: 10**60})  # one more digit: higher, though "1" < "9"
    assert reopen().read("p", "s") == {SHARD: 10**60}
    store.commit("p", "s", {SHARD: 9 * 10**59})  # a late, lower commit never moves it back
    assert reopen().read("p", "s") == {SHARD: 10**60}
    assert merge_positions({SHARD: 10**60}, {SHARD: 9 * 10**59}) == {}
    assert merge_positions({SHARD: 9 * 10**59}, {SHARD: 10**60}) == {SHARD: 10**60}


def test_crash_between_write_and_commit_keeps_the_old_positions(reopen: Reopen) -> None:
    delivered: list[int] = []

    def run(batches: list[EventBatch], crash_before_commit: bool) -> None:
        """The documented protocol: skip covered events, deliver, then commit."""
        store = reopen()
        stored = store.read("p", "bus")
        for batch in batches:
            delivered.extend(
                e.position.offset for e in batch.events if not is_covered(stored, e.position)
            )
            if crash_before_commit:
                return  # the process dies here: delivered, not committed
            store.commit("p", "bus", {batch.partition_key: batch.last_offset})
            stored[batch.partition_key] = batch.last_offset

    first, second = _batch(BIG - 2, BIG - 1), _batch(BIG, BIG + 1)
    run([first], crash_before_commit=False)
    run([second], crash_before_commit=True)
    assert reopen().read("p", "bus") == {SHARD: BIG - 1}
    run([first, second], crash_before_commit=False)  # the restart replays from the old position
    assert reopen().read("p", "bus") == {SHARD: BIG + 1}
    # at least once: the second batch reached the sink twice, the first only once
    assert delivered == [BIG - 2, BIG - 1, BIG, BIG + 1, BIG, BIG + 1]


def test_sinks_and_pipelines_do_not_see_each_others_rows(reopen: Reopen) -> None:
    store = reopen()
    store.commit("p1", "bus", {SHARD: 1})
    store.commit("p1", "search", {SHARD: 2})
    store.commit("p2", "bus", {SHARD: 3})
    other = reopen()
    assert other.read("p1", "bus") == {SHARD: 1}
    assert other.read("p1", "search") == {SHARD: 2}
    assert other.read("p2", "bus") == {SHARD: 3}
    assert other.read("p2", "search") == {}
    other.reset("p1", "bus")
    assert reopen().read("p1", "bus") == {}
    assert reopen().read("p1", "search") == {SHARD: 2}


def test_commit_keeps_partitions_it_does_not_name_and_reset_one(reopen: Reopen) -> None:
    store = reopen()
    store.commit("p", "s", {("t", "0"): 5, ("t", "1"): 6})
    store.commit("p", "s", {("t", "1"): 8})
    assert reopen().read("p", "s") == {("t", "0"): 5, ("t", "1"): 8}
    store.reset("p", "s", [("t", "0")])
    assert reopen().read("p", "s") == {("t", "1"): 8}


@pytest.mark.parametrize(
    "bad",
    [
        {("t", 0): 1},  # partition not text
        {"t": 1},  # not a pair
        {("t", "1"): True},  # bool is not an offset
        {("t", "1"): 1.5},
        {("t", "1"): "12"},
    ],
)
def test_a_malformed_position_stores_nothing(reopen: Reopen, bad: dict) -> None:  # type: ignore[type-arg]
    store = reopen()
    store.commit("p", "s", {("t", "0"): 1})
    with pytest.raises(TypeError):
        store.commit("p", "s", {("t", "0"): 2, **bad})
    assert reopen().read("p", "s") == {("t", "0"): 1}


def test_negative_offsets_are_positions_too() -> None:
    assert check_positions({("t", "0"): -1}) == {("t", "0"): -1}
    assert is_covered({("t", "0"): -1}, Position("t", 0, -1))
    assert not is_covered({("t", "0"): -1}, Position("t", 0, 0))
    assert not is_covered({}, Position("t", 0, 0))


def test_sqlite_stores_offsets_as_exact_text(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with SqlitePositionStore(path) as store:
        store.commit("p", "s", {SHARD: BIG})
    with sqlite3.connect(path) as conn:
        declared = {row[1]: row[2] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
        value, kind = conn.execute(f'SELECT "offset", typeof("offset") FROM {TABLE}').fetchone()
    assert declared["offset"] == "TEXT"
    assert (value, kind) == (str(BIG), "text")


def test_sqlite_read_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "p.sqlite"
    assert SqlitePositionStore(path).read("p", "s") == {}
    assert not path.exists() and not path.parent.exists()
    sqlite3.connect(tmp_path / "empty.sqlite").close()
    assert SqlitePositionStore(tmp_path / "empty.sqlite").read("p", "s") == {}


def test_sqlite_store_pickles_before_and_after_opening(tmp_path: Path) -> None:
    store = SqlitePositionStore(tmp_path / "p.sqlite")
    copy = pickle.loads(pickle.dumps(store))
    store.commit("p", "s", {SHARD: BIG})
    again = pickle.loads(pickle.dumps(store))
    assert copy.read("p", "s") == again.read("p", "s") == {SHARD: BIG}
    again.commit("p", "s", {SHARD: BIG + 1})
    assert store.read("p", "s") == {SHARD: BIG + 1}


def test_sqlite_commit_killed_mid_transaction_leaves_the_old_positions(tmp_path: Path) -> None:
    """A process killed inside a commit (two partitions, one written) stores neither."""
    path = tmp_path / "p.sqlite"
    with SqlitePositionStore(path) as store:
        store.commit("p", "s", {("t", "0"): 1, ("t", "1"): 1})
    child = textwrap.dedent(
        f"""
        import os
        from cdcflow.io.position_store import TABLE, SqlitePositionStore
        from cdcflow.io.sqlite_store import upsert_positions
        store = SqlitePositionStore({str(path)!r})
        with store.file.transaction() as conn:
            upsert_positions(conn, TABLE, "sink", "p", "s", {{("t", "0"): {BIG}}})
            os._exit(9)  # like kill -9: no rollback, no commit, no cleanup
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr
    assert SqlitePositionStore(path).read("p", "s") == {("t", "0"): 1, ("t", "1"): 1}


def _batch(*offsets: int) -> EventBatch:
    events = [
        ChangeEvent(
            op=Op.CREATE,
            table=TableId("shop", "public", "orders"),
            position=Position(SHARD[0], SHARD[1], offset),
            after={"id": i},
        )
        for i, offset in enumerate(offsets)
    ]
    return EventBatch(stream=SHARD[0], partition=SHARD[1], last_offset=offsets[-1], events=events)


def test_sqlite_commit_against_a_held_lock_is_transient_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.sqlite"
    store = SqlitePositionStore(path, timeout=0.05)
    store.commit("p", "s", {SHARD: 1})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        with pytest.raises(TransientSinkError, match="locked"):
            store.commit("p", "s", {SHARD: 2})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.read("p", "s") == {SHARD: 1}
    store.commit("p", "s", {SHARD: 2})  # a retry succeeds once the lock is gone
    assert store.read("p", "s") == {SHARD: 2}
    store.close()


_partitions = st.sampled_from(["0", "7", "shardId-000000000001", "shardId-000000000002"])
_offsets = st.integers(min_value=-(10**3), max_value=10**129)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_partitions, _offsets), max_size=12))
def test_stored_offset_is_the_numeric_maximum_committed(commits: list[tuple[str, int]]) -> None:
    expected: dict[tuple[str, str], int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlitePositionStore(Path(tmp) / "p.sqlite")
        memory = MemoryPositionStore()
        for partition, offset in commits:
            key = ("stream", partition)
            store.commit("p", "s", {key: offset})
            memory.commit("p", "s", {key: offset})
            expected[key] = max(offset, expected.get(key, offset))
        store.close()
        assert SqlitePositionStore(Path(tmp) / "p.sqlite").read("p", "s") == expected
        assert memory.read("p", "s") == expected
